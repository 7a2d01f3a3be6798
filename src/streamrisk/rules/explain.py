"""Why a payment got its decision: the rules that fired with the values they read, and the score's
largest contributions (weight x value). Optional on each decision (STREAMRISK_EXPLAIN)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .ruleset import Context, FiredRule, Ruleset

TOP_CONTRIBUTIONS = 3


def explanation(ruleset: Ruleset, ctx: Context, fired: Sequence[FiredRule], values: list[float],
                score: float) -> dict[str, Any]:
    """The `explanation` field of a decision; `values` are the score's feature values (computed once)."""
    rules = []
    for f in fired:
        read: dict[str, Any] = {}
        for ns, field in ruleset.fields_read.get(f.name, ()):
            read[f"{ns}.{field}"] = ctx.get(ns, {}).get(field)
        rules.append({"rule": f.name, "reason": f.reason, "action": f.action, "read": read})
    model = ruleset.score_model
    parts = sorted(model.contributions(values), key=lambda p: -abs(p[2]))[:TOP_CONTRIBUTIONS]
    return {
        "rules": rules,
        "score": {
            "value": score,
            "bias": model.bias,
            "top": [{"feature": key, "value": x, "contribution": c} for key, x, c in parts],
        },
    }
