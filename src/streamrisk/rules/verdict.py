"""The verdict for one payment: the stricter of the rules' actions and the score's thresholds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from streamrisk.rules.explain import explanation
from streamrisk.rules.ruleset import HIGH_SCORE, Context, FiredRule, Ruleset
from streamrisk.rules.schema import MERCHANT_FIELDS

APPROVE: Final = "approve"
REVIEW: Final = "review"
DECLINE: Final = "decline"
_ACTIONS: Final = (APPROVE, REVIEW, DECLINE)  # index = strictness
_RANK: Final = {"review": 1, "decline": 2, "alert": 0}


#: A merchant never seen before: every feature 0.0, so merchant rules see a quiet merchant
#: instead of erroring on missing fields.
UNKNOWN_MERCHANT: Final[Mapping[str, float]] = MappingProxyType(
    dict.fromkeys(MERCHANT_FIELDS, 0.0)
)


def make_context(
    payment: Mapping[str, Any],
    user: Mapping[str, Any],
    merchant: Mapping[str, Any] | None = None,
) -> dict[str, Mapping[str, Any]]:
    """The context rules and score read; ``merchant=None`` means an unknown merchant."""
    return {"payment": payment, "user": user,
            "merchant": UNKNOWN_MERCHANT if merchant is None else merchant}


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a payment and why."""

    action: str  # approve | review | decline
    score: float  # 0..1
    reasons: tuple[str, ...]  # fired rules' reasons in rule order (+ HIGH_SCORE)
    alerts: tuple[FiredRule, ...]  # every fired rule, alert-only ones included
    rules_version: str
    explanation: dict[str, Any] | None = None  # see rules/explain.py; only when asked for


def decide(ruleset: Ruleset, ctx: Context, explain: bool = False, score: float | None = None) -> Verdict:
    """Evaluate rules and score for one payment; never raises on a bad context.

    `explain` adds the rules that fired with the values they read and the top score contributions.
    `score`: this payment's score, already computed by a model of the same formula (ScoreModel.formula).
    """
    fired = ruleset.evaluate(ctx)
    if explain:
        values = ruleset.score_model.values(ctx)
        score = ruleset.score_model.score_of(values)
    elif score is None:
        score = ruleset.score(ctx)
    rule_rank = 0
    reasons: list[str] = []
    for f in fired:
        rank = _RANK[f.action]
        if rank > rule_rank:
            rule_rank = rank
        if f.reason not in reasons:  # two rules may share a reason code
            reasons.append(f.reason)
    score_rank = ruleset.score_model.action(score)
    if score_rank > rule_rank:
        reasons.append(HIGH_SCORE)
        rule_rank = score_rank
    why = explanation(ruleset, ctx, fired, values, score) if explain else None
    return Verdict(_ACTIONS[rule_rank], score, tuple(reasons), tuple(fired), ruleset.version, why)
