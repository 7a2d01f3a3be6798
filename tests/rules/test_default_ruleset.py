"""The shipped default ruleset: each reason code fires on its pattern and not on normal traffic."""

from __future__ import annotations

from typing import Any

import pytest
from rules_helpers import normal_ctx

from streamrisk.rules import HIGH_SCORE, Ruleset, decide, default_ruleset

# reason -> (fields that make it fire, a near miss that must not fire)
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "VELOCITY_5M": (
        {"user": {"payment_count_5m": 11, "payment_count_1h": 12}},
        {"user": {"payment_count_5m": 10, "payment_count_1h": 12}},
    ),
    "VELOCITY_1H": (
        {"user": {"payment_count_1h": 31}},
        {"user": {"payment_count_1h": 30}},
    ),
    "CARD_TESTING": (
        {"user": {"payment_count_5m": 6, "distinct_merchants_5m": 5,
                  "payment_amount_mean_5m": 1.2}},
        {"user": {"payment_count_5m": 6, "distinct_merchants_5m": 5,
                  "payment_amount_mean_5m": 35.0}},
    ),
    "NEW_DEVICE_HIGH_AMOUNT": (
        {"user": {"new_device": 1, "amount_zscore_30d": 4.5}, "payment": {"amount": 420.0}},
        {"user": {"new_device": 0, "amount_zscore_30d": 4.5}, "payment": {"amount": 420.0}},
    ),
    "DEVICE_HOPPING": (
        {"user": {"distinct_devices_24h": 5}},
        {"user": {"distinct_devices_24h": 2}},
    ),
    "MERCHANT_REFUND_SPIKE": (
        {"merchant": {"order_count_24h": 300, "refund_rate_24h": 0.4, "refund_rate_30d": 0.05}},
        {"merchant": {"order_count_24h": 300, "refund_rate_24h": 0.4, "refund_rate_30d": 0.35}},
    ),
    "MERCHANT_BUST_OUT": (
        {"merchant": {"order_amount_sum_24h": 60_000.0, "order_amount_sum_30d": 90_000.0,
                      "chargeback_count_30d": 5}},
        {"merchant": {"order_amount_sum_24h": 60_000.0, "order_amount_sum_30d": 900_000.0,
                      "chargeback_count_30d": 5}},
    ),
    "USER_CHARGEBACKS": (
        {"user": {"chargeback_count_30d": 1, "chargeback_rate_30d": 0.08}},
        {"user": {"chargeback_count_30d": 0}},
    ),
    "OVER_LIMIT": (
        {"payment": {"method": "credit_line", "amount": 1500.01}},
        {"payment": {"method": "credit_line", "amount": 1500.0}},
    ),
    "AMOUNT_OUTLIER": (
        {"user": {"amount_zscore_30d": 7.0}, "payment": {"amount": 900.0}},
        {"user": {"amount_zscore_30d": 7.0}, "payment": {"amount": 90.0}},
    ),
}


def test_every_default_reason_code_has_a_case(default: Ruleset) -> None:
    assert {r.reason for r in default.rules} == set(CASES)


def test_normal_payment_is_approved_cleanly_with_a_low_score() -> None:
    fresh = default_ruleset()  # the shared fixture's error counters see other tests
    v = decide(fresh, normal_ctx())
    assert (v.action, v.reasons, v.alerts) == ("approve", (), ())
    assert v.score < 0.1
    assert fresh.total_errors == 0


@pytest.mark.parametrize("reason", sorted(CASES))
def test_default_reason_fires_on_its_pattern(default: Ruleset, reason: str) -> None:
    fired = [f.reason for f in default.evaluate(normal_ctx(**CASES[reason][0]))]
    assert fired == [reason]


@pytest.mark.parametrize("reason", sorted(CASES))
def test_default_reason_does_not_fire_on_near_miss(default: Ruleset, reason: str) -> None:
    assert default.evaluate(normal_ctx(**CASES[reason][1])) == []


def test_default_ruleset_fires_velocity_on_burst(default: Ruleset) -> None:
    v = decide(default, normal_ctx(user={"payment_count_5m": 25, "payment_count_1h": 26}))
    assert v.action == "decline"
    assert v.reasons[0] == "VELOCITY_5M"
    assert v.alerts[0].severity == "high"


def test_card_testing_burst_declines_with_both_reasons(default: Ruleset) -> None:
    ctx = normal_ctx(user={"payment_count_5m": 14, "distinct_merchants_5m": 12,
                           "payment_amount_mean_5m": 1.0})
    v = decide(default, ctx)
    assert v.action == "decline"
    assert v.reasons == ("VELOCITY_5M", "CARD_TESTING")


def test_amount_outlier_is_alert_only(default: Ruleset) -> None:
    v = decide(default, normal_ctx(**CASES["AMOUNT_OUTLIER"][0]))
    assert v.action == "approve"
    assert [a.reason for a in v.alerts] == ["AMOUNT_OUTLIER"]


def test_default_score_alone_can_push_a_risky_but_ruleless_payment_to_review(
    default: Ruleset,
) -> None:
    # Everything is elevated but below each rule's threshold.
    ctx = normal_ctx(
        user={"payment_count_5m": 8, "payment_count_1h": 20, "distinct_merchants_5m": 3,
              "amount_zscore_30d": 2.5, "new_device": 1, "distinct_devices_24h": 3,
              "repayment_on_time_rate_30d": 0.0},
        payment={"amount": 800.0},
    )
    v = decide(default, ctx)
    assert v.alerts == ()
    assert v.action in ("review", "decline")
    assert v.reasons == (HIGH_SCORE,)
