"""Risk rules in CEL, a logistic score and the verdict for one payment (pure Python).
The ruleset schema and default reason codes are documented in README.md here."""

from streamrisk.rules.loading import default_ruleset, load_ruleset
from streamrisk.rules.ruleset import (
    ACTIONS,
    HIGH_SCORE,
    SEVERITIES,
    FiredRule,
    Rule,
    Ruleset,
    RulesetError,
)
from streamrisk.rules.score import ScoreModel
from streamrisk.rules.verdict import (
    APPROVE,
    DECLINE,
    REVIEW,
    UNKNOWN_MERCHANT,
    Verdict,
    decide,
    make_context,
)

__all__ = [
    "ACTIONS",
    "APPROVE",
    "DECLINE",
    "HIGH_SCORE",
    "REVIEW",
    "SEVERITIES",
    "UNKNOWN_MERCHANT",
    "FiredRule",
    "Rule",
    "Ruleset",
    "RulesetError",
    "ScoreModel",
    "Verdict",
    "decide",
    "default_ruleset",
    "load_ruleset",
    "make_context",
]
