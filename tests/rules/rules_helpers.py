"""Builders shared by the rules tests: a normal payment context, rules and rulesets."""

from __future__ import annotations

from typing import Any

from streamrisk.rules.schema import MERCHANT_FIELDS, USER_FIELDS, WINDOWS

Ctx = dict[str, dict[str, Any]]


def normal_ctx(**overrides: dict[str, Any]) -> Ctx:
    """A regular card payment by a regular user at a regular merchant.

    ``overrides`` maps a namespace to the fields to change, e.g. ``user={"new_device": 1}``.
    """
    user: dict[str, Any] = dict.fromkeys(USER_FIELDS, 0.0)
    counts = {"5m": 1, "1h": 2, "24h": 3, "30d": 12}
    for w in WINDOWS:
        user[f"payment_count_{w}"] = counts[w]
        user[f"payment_amount_sum_{w}"] = 40.0 * counts[w]
        user[f"payment_amount_mean_{w}"] = 40.0
        user[f"payment_amount_std_{w}"] = 10.0 if counts[w] > 1 else 0.0
        user[f"payment_amount_max_{w}"] = 60.0
        user[f"distinct_merchants_{w}"] = min(counts[w], 5)
        user[f"distinct_devices_{w}"] = 1 if w != "30d" else 2
    user.update(
        repayment_on_time_rate_30d=1.0, amount_zscore_30d=0.2, new_device=0,
        credit_limit=2000.0, credit_available=1500.0, credit_utilization=0.25,
    )
    merchant: dict[str, Any] = dict.fromkeys(MERCHANT_FIELDS, 0.0)
    orders = {"5m": 2, "1h": 20, "24h": 300, "30d": 9000}
    for w in WINDOWS:
        merchant[f"order_count_{w}"] = orders[w]
        merchant[f"order_amount_sum_{w}"] = 45.0 * orders[w]
        merchant[f"fulfilled_amount_sum_{w}"] = 44.0 * orders[w]
        merchant[f"refund_count_{w}"] = orders[w] // 50
        merchant[f"refund_rate_{w}"] = 0.02
        merchant[f"distinct_buyers_{w}"] = int(orders[w] * 0.8)
        merchant[f"payment_count_{w}"] = orders[w]
    merchant.update(chargeback_count_30d=4, chargeback_rate_30d=0.0005,
                    receivables=12000.0, sales_velocity_1h=900.0)
    payment: dict[str, Any] = {
        "amount": 42.5, "currency": "EUR", "method": "card", "merchant_id": "m-1",
        "user_id": "u-1", "device_id": "d-1", "country": "DE", "ts": 1_764_000_000.0,
        "ip": "192.0.2.1", "event_id": "e-1",
    }
    ctx: Ctx = {"payment": payment, "user": user, "merchant": merchant}
    for ns, fields in overrides.items():
        ctx[ns].update(fields)
    return ctx


def rule(name: str = "r1", when: str = "user.payment_count_5m > 10.0", **fields: Any) -> dict:
    """A valid rule mapping; keyword arguments override or add keys."""
    base = {"name": name, "when": when, "action": "review", "severity": "medium",
            "reason": name.upper()}
    base.update(fields)
    return base


def ruleset_mapping(*rules: dict, **top: Any) -> dict:
    """A valid ruleset mapping with the given rules; keyword arguments set top-level keys."""
    raw: dict[str, Any] = {"version": "test-1", "rules": list(rules)}
    raw.update(top)
    return raw
