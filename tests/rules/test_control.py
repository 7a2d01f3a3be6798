"""The ruleset in force: a rejected ruleset's error is bounded, however large the value it quotes."""

from __future__ import annotations

import orjson

from streamrisk.rules import default_ruleset
from streamrisk.rules.control import RulesControl


def test_a_rejected_rulesets_error_never_repeats_a_huge_value() -> None:
    control = RulesControl(default_ruleset())
    huge = "block" * 1_000_000
    record = {"version": "v9", "rules": [{"name": "r", "when": "true", "action": huge,
                                          "severity": "high", "reason": "R"}]}
    error = control.publish("x" * 100_000, orjson.dumps(record))
    assert error is not None and "rejected" in error and len(error) <= 1000
    assert control.stats()["last_ruleset_error"] == error
    assert control.ruleset.version == default_ruleset().version  # the previous one stays
