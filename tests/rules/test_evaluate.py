"""Evaluating rules per payment: order, numeric types, errors counted instead of raised."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rules_helpers import normal_ctx, rule, ruleset_mapping

from streamrisk.rules import FiredRule, Ruleset, load_ruleset
from streamrisk.rules.schema import CONTEXT_SCHEMA


def test_fired_rules_come_back_in_rule_order_with_their_metadata() -> None:
    rs = load_ruleset(ruleset_mapping(
        rule("second_listed_first", when="user.new_device >= 1.0", action="decline",
             severity="high", reason="NEW"),
        rule("never", when="false"),
        rule("always", when="true", action="alert", severity="low", reason="ALWAYS"),
    ))
    fired = rs.evaluate(normal_ctx(user={"new_device": 1}))
    assert fired == [
        FiredRule("second_listed_first", "decline", "high", "NEW"),
        FiredRule("always", "alert", "low", "ALWAYS"),
    ]


def test_missing_feature_makes_only_its_rule_error_and_counts_it() -> None:
    rs = load_ruleset(ruleset_mapping(
        rule("needs_velocity", when="user.payment_count_5m > 0.0"),
        rule("needs_device", when="user.new_device == 0.0"),
    ))
    ctx = normal_ctx()
    del ctx["user"]["payment_count_5m"]
    assert [f.name for f in rs.evaluate(ctx)] == ["needs_device"]
    assert rs.evaluate(ctx) == rs.evaluate(ctx)
    assert rs.error_counts() == {"needs_velocity": 3}
    assert rs.total_errors == 3
    assert "user.payment_count_5m" in rs.last_errors()["needs_velocity"]
    assert rs.evaluations == 3


def test_division_by_zero_at_evaluation_is_counted_not_raised() -> None:
    # Guarded so the load-time probes (all fields 0, 1, 1e9 or -1) never divide by zero.
    rs = load_ruleset(ruleset_mapping(
        rule("ratio", when="user.payment_count_5m > 1.0 "
                           "&& int(user.payment_count_5m) / int(user.new_device) > 2"),
        rule("plain", when="user.payment_count_5m > 1.0"),
    ))
    fired = rs.evaluate(normal_ctx(user={"payment_count_5m": 5, "new_device": 0}))
    assert [f.name for f in fired] == ["plain"]
    assert rs.error_counts() == {"ratio": 1}
    assert "ZeroDivisionError" in rs.last_errors()["ratio"]


def test_missing_namespace_counts_errors_for_rules_reading_it() -> None:
    rs = load_ruleset(ruleset_mapping(rule("m", when="merchant.refund_rate_24h > 0.5"),
                                      rule("u", when="user.new_device == 0.0")))
    ctx = normal_ctx()
    del ctx["merchant"]
    assert [f.name for f in rs.evaluate(ctx)] == ["u"]
    assert rs.error_counts() == {"m": 1}


def test_ints_floats_and_bools_are_all_doubles_to_rules() -> None:
    rs = load_ruleset(ruleset_mapping(
        rule("arith", when="user.payment_count_5m * 2.0 + user.new_device >= 7.0"),
        rule("cmp", when="user.payment_count_5m == 3.0 && user.new_device > 0.5"),
    ))
    for count, device in ((3, 1), (3.0, 1.0), (3, True), (3.0, True), ("3", "1")):
        fired = rs.evaluate(normal_ctx(user={"payment_count_5m": count, "new_device": device}))
        assert [f.name for f in fired] == ["arith", "cmp"], (count, device)
    assert rs.total_errors == 0


def test_huge_and_non_finite_values_do_not_crash_or_fire() -> None:
    rs = load_ruleset(ruleset_mapping(rule("big", when="user.payment_count_5m > 10.0"),
                                      rule("small", when="user.payment_count_5m < 10.0")))
    assert [f.name for f in rs.evaluate(normal_ctx(user={"payment_count_5m": 2**80}))] == ["big"]
    assert [f.name for f in rs.evaluate(normal_ctx(user={"payment_count_5m": math.inf}))] == [
        "big"
    ]
    assert rs.evaluate(normal_ctx(user={"payment_count_5m": math.nan})) == []


def test_value_cel_cannot_represent_only_breaks_rules_reading_it() -> None:
    rs = load_ruleset(ruleset_mapping(rule("method", when="payment.method == 'card'"),
                                      rule("device", when="user.new_device == 0.0")))
    assert [f.name for f in rs.evaluate(normal_ctx(payment={"method": object()}))] == ["device"]
    assert rs.error_counts() == {"method": 1}


def test_empty_ruleset_fires_nothing() -> None:
    rs = load_ruleset({"version": "empty", "rules": []})
    assert rs.evaluate(normal_ctx()) == []


_values = st.one_of(
    st.none(), st.booleans(), st.builds(object), st.integers(), st.floats(allow_nan=True),
    st.text(max_size=5), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


@st.composite
def messy_contexts(draw: st.DrawFn) -> dict[str, Any]:
    """Contexts where any field may be missing or hold any kind of value."""
    ctx: dict[str, Any] = {}
    for ns, fields in CONTEXT_SCHEMA.items():
        if draw(st.booleans()) and draw(st.booleans()):
            continue  # a whole namespace missing, now and then
        base = normal_ctx()[ns]
        out = {}
        for name in fields:
            choice = draw(st.integers(0, 9))
            if choice == 0:
                continue
            out[name] = draw(_values) if choice == 1 else base[name]
        ctx[ns] = out
    return ctx


@settings(max_examples=300, deadline=None)
@given(ctx=messy_contexts())
def test_default_ruleset_never_raises_on_any_context(default: Ruleset, ctx: dict) -> None:
    fired = default.evaluate(ctx)
    assert all(isinstance(f, FiredRule) for f in fired)
    assert 0.0 <= default.score(ctx) <= 1.0


def test_merchant_only_rules_are_about_the_merchant_and_evaluate_on_its_features_alone() -> None:
    rs = load_ruleset(ruleset_mapping(
        rule("spike", when="merchant.refund_rate_24h >= 0.3", reason="SPIKE"),
        rule("mixed", when="merchant.refund_rate_24h >= 0.3 && payment.amount > 1.0", reason="MIXED"),
        rule("user_only", when="user.payment_count_5m > 1.0", reason="USER"),
    ))
    ctx = normal_ctx(merchant={"refund_rate_24h": 0.5}, user={"payment_count_5m": 3},
                     payment={"amount": 5.0})
    assert [(f.reason, f.subject) for f in rs.evaluate(ctx)] == [
        ("SPIKE", "merchant"), ("MIXED", "user"), ("USER", "user"),
    ]
    # The merchant's owner has no payment or user in hand: only merchant-only rules run.
    assert [f.reason for f in rs.evaluate_merchant({"refund_rate_24h": 0.5})] == ["SPIKE"]
    assert rs.evaluate_merchant({"refund_rate_24h": 0.1}) == []
    assert rs.total_errors == 0
