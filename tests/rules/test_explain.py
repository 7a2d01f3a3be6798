"""Explained decisions: the rules that fired with the values they read, and the score's largest
contributions; the same verdict as without, and off unless STREAMRISK_EXPLAIN asks for it."""

from __future__ import annotations

import math

import pytest
from rules_helpers import normal_ctx
from tests.pipeline import Pipeline

from streamrisk.loadgen import patterns
from streamrisk.rules import Ruleset, decide
from streamrisk.settings import Settings, SettingsError


def test_explanation_names_fired_rules_with_the_values_they_read(default: Ruleset) -> None:
    ctx = normal_ctx(user={"payment_count_5m": 14.0, "payment_count_1h": 14.0})
    plain, explained = decide(default, ctx), decide(default, ctx, explain=True)
    assert plain.explanation is None
    assert (explained.action, explained.reasons) == (plain.action, plain.reasons)
    assert explained.score == plain.score
    rules = {r["rule"]: r for r in explained.explanation["rules"]}
    assert rules["velocity_5m"] == {"rule": "velocity_5m", "reason": "VELOCITY_5M", "action": "decline",
                                    "read": {"user.payment_count_5m": 14.0}}
    assert set(rules) == {f.name for f in explained.alerts}


def test_explanation_lists_the_largest_score_contributions_as_weight_times_value(default: Ruleset) -> None:
    ctx = normal_ctx(user={"payment_count_5m": 14.0, "new_device": 1.0})
    why = decide(default, ctx, explain=True).explanation["score"]
    weights = dict(zip((f.key for f in default.score_model.features), default.score_model._w, strict=True))
    top = why["top"]
    assert len(top) == 3
    sizes = [abs(t["contribution"]) for t in top]
    assert sizes == sorted(sizes, reverse=True)
    assert top[0] == {"feature": "user.payment_count_5m", "value": 14.0, "contribution": pytest.approx(4.9)}
    for t in top:
        assert t["contribution"] == pytest.approx(weights[t["feature"]] * t["value"])
    z = why["bias"] + sum(w * x for w, x in zip(
        weights.values(), default.score_model.values(ctx), strict=True))
    assert why["value"] == pytest.approx(1 / (1 + math.exp(-z)))


def test_decisions_carry_an_explanation_only_when_the_setting_is_on() -> None:
    records = patterns.velocity_burst("v1", 1_800_000_000_000)
    off = Pipeline()
    off.run(records, now=1_800_000_000_000)
    assert all("explanation" not in d for d in off.records("risk-decisions"))
    on = Pipeline(Settings(explain_decisions=True))
    on.run(records, now=1_800_000_000_000)
    decisions = on.records("risk-decisions")
    assert all("explanation" in d for d in decisions)
    last = decisions[-1]["explanation"]
    assert last["rules"][0]["read"] == {"user.payment_count_5m": 15.0}
    # Same decisions either way.
    strip = [{k: v for k, v in d.items() if k not in ("explanation", "decided_at")} for d in decisions]
    assert strip == [{k: v for k, v in d.items() if k != "decided_at"} for d in off.records("risk-decisions")]


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("true", True), ("no", False), ("0", False)])
def test_explain_setting_reads_yes_and_no(raw: str, expected: bool) -> None:
    assert Settings.from_env({"STREAMRISK_EXPLAIN": raw}).explain_decisions is expected


def test_explain_setting_refuses_other_words() -> None:
    with pytest.raises(SettingsError, match="STREAMRISK_EXPLAIN must be"):
        Settings.from_env({"STREAMRISK_EXPLAIN": "maybe"})
