"""Why a payment got its decision: the rules that fired with the values they read, and the score's
largest contributions (weight x value). Optional on each decision (STREAMRISK_EXPLAIN)."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

from .ruleset import Context, FiredRule, Ruleset

TOP_CONTRIBUTIONS = 3


def _size(part: tuple[str, float, float]) -> float:
    return abs(part[2])


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
    parts = heapq.nlargest(TOP_CONTRIBUTIONS, model.contributions(values), key=_size)
    return {
        "rules": rules,
        "score": {
            "value": score,
            "bias": model.bias,
            "top": [{"feature": key, "value": x, "contribution": c} for key, x, c in parts],
        },
    }
