"""decide(): the stricter of rules and score, reasons, alerts and the ruleset version."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rules_helpers import normal_ctx, rule, ruleset_mapping

from streamrisk.rules import (
    HIGH_SCORE,
    FiredRule,
    Ruleset,
    decide,
    default_ruleset,
    load_ruleset,
    make_context,
)

# Score = sigmoid(-5 + user.payment_count_5m): 5 -> 0.5, 6 -> 0.73 (review), 8 -> 0.95 (decline)
SCORE = {"bias": -5.0, "weights": {"user.payment_count_5m": 1.0},
         "review_at": 0.6, "decline_at": 0.9}


def ruleset(*rules: dict) -> Ruleset:
    return load_ruleset(ruleset_mapping(*rules, score=SCORE))


def with_count(count: int, **user: Any) -> dict:
    return normal_ctx(user={"payment_count_5m": count, **user})


def test_clean_payment_is_approved_without_reasons_or_alerts() -> None:
    v = decide(ruleset(rule(when="user.new_device >= 1.0")), with_count(1))
    assert (v.action, v.reasons, v.alerts) == ("approve", (), ())
    assert 0.0 < v.score < 0.6


def test_score_alone_adds_high_score_reason() -> None:
    v = decide(ruleset(rule(when="user.new_device >= 1.0")), with_count(6))
    assert v.action == "review"
    assert v.reasons == (HIGH_SCORE,)
    assert v.alerts == ()


def test_stricter_of_rules_and_score_wins() -> None:
    rs = ruleset(rule("device", when="user.new_device >= 1.0", action="review",
                      reason="DEVICE"),
                 rule("burst", when="user.payment_count_5m >= 10.0", action="decline",
                      reason="BURST"))
    # The score (decline) beats the rule (review): the score's reason is added.
    v = decide(rs, with_count(8, new_device=1))
    assert (v.action, v.reasons) == ("decline", ("DEVICE", HIGH_SCORE))
    # The rule (decline) is at least as strict as the score (decline): no HIGH_SCORE.
    v = decide(rs, with_count(10, new_device=1))
    assert (v.action, v.reasons) == ("decline", ("DEVICE", "BURST"))
    # The rule (review) equals the score (review): no HIGH_SCORE.
    v = decide(rs, with_count(6, new_device=1))
    assert (v.action, v.reasons) == ("review", ("DEVICE",))


def test_alert_only_rule_is_alerted_without_changing_the_action() -> None:
    rs = ruleset(rule("watch", when="user.new_device >= 1.0", action="alert", severity="high",
                      reason="WATCH"))
    v = decide(rs, with_count(1, new_device=1))
    assert v.action == "approve"
    assert v.reasons == ("WATCH",)
    assert v.alerts == (FiredRule("watch", "alert", "high", "WATCH"),)


def test_alert_only_rule_does_not_hide_a_high_score() -> None:
    rs = ruleset(rule("watch", when="true", action="alert", reason="WATCH"))
    v = decide(rs, with_count(6))
    assert (v.action, v.reasons) == ("review", ("WATCH", HIGH_SCORE))


def test_reasons_follow_rule_order_and_appear_once() -> None:
    rs = ruleset(rule("a", when="true", reason="SHARED"), rule("b", when="true", reason="B"),
                 rule("c", when="true", reason="SHARED"))
    v = decide(rs, with_count(1))
    assert v.reasons == ("SHARED", "B")
    assert [a.name for a in v.alerts] == ["a", "b", "c"]


def test_verdict_carries_the_rules_version() -> None:
    assert decide(ruleset(), with_count(1)).rules_version == "test-1"


def test_unknown_merchant_is_a_quiet_merchant_not_an_error() -> None:
    rs = default_ruleset()
    ctx = normal_ctx()
    v = decide(rs, make_context(ctx["payment"], ctx["user"], None))
    assert (v.action, v.reasons) == ("approve", ())
    assert rs.total_errors == 0


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["payment", "user", "merchant", "other"]),
                       st.dictionaries(st.text(max_size=25), st.floats() | st.text(max_size=3),
                                       max_size=5), max_size=4))
def test_decide_never_raises(default: Ruleset, ctx: dict) -> None:
    v = decide(default, ctx)
    assert v.action in ("approve", "review", "decline")
    assert 0.0 <= v.score <= 1.0
