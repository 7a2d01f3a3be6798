"""The fields a rule or score may read from a payment's context, with their kinds.
Rulesets are checked against it at load, so a misspelt feature rejects the ruleset."""

from __future__ import annotations

from typing import Final

WINDOWS: Final = ("5m", "1h", "24h", "30d")

#: Kind of a field: ``"num"`` values reach rules as doubles, ``"str"`` values as strings.
NUM: Final = "num"
STR: Final = "str"

PAYMENT_FIELDS: Final[dict[str, str]] = {
    "amount": NUM,
    "currency": STR,
    "method": STR,
    "merchant_id": STR,
    "user_id": STR,
    "device_id": STR,
    "country": STR,
    "ts": NUM,
    "ip": STR,
    "event_id": STR,
}

_USER_WINDOWED: Final = (
    "payment_count",
    "payment_amount_sum",
    "payment_amount_mean",
    "payment_amount_std",
    "payment_amount_max",
    "distinct_merchants",
    "distinct_devices",
)
USER_FIELDS: Final[dict[str, str]] = {
    **{f"{m}_{w}": NUM for m in _USER_WINDOWED for w in WINDOWS},
    "chargeback_count_30d": NUM,
    "chargeback_rate_30d": NUM,
    "repayment_on_time_rate_30d": NUM,
    "amount_zscore_30d": NUM,
    "new_device": NUM,
    # The user's credit account before this payment draws (credit/; major units, utilization 0..1).
    "credit_limit": NUM,
    "credit_available": NUM,
    "credit_utilization": NUM,
}

_MERCHANT_WINDOWED: Final = (
    "order_count",
    "order_amount_sum",
    "fulfilled_amount_sum",
    "refund_count",
    "refund_rate",
    "distinct_buyers",
    "payment_count",
)
MERCHANT_FIELDS: Final[dict[str, str]] = {
    **{f"{m}_{w}": NUM for m in _MERCHANT_WINDOWED for w in WINDOWS},
    "chargeback_count_30d": NUM,
    "chargeback_rate_30d": NUM,
    "receivables": NUM,
    "sales_velocity_1h": NUM,
}

#: Namespace -> field -> kind: the whole context a rule can see.
CONTEXT_SCHEMA: Final[dict[str, dict[str, str]]] = {
    "payment": PAYMENT_FIELDS,
    "user": USER_FIELDS,
    "merchant": MERCHANT_FIELDS,
}

PAYMENT_METHODS: Final = ("credit_line", "card", "wallet")


def field_kind(namespace: str, field: str) -> str | None:
    """Return the kind of ``namespace.field``, or None when the schema has no such field."""
    fields = CONTEXT_SCHEMA.get(namespace)
    return None if fields is None else fields.get(field)
