"""Contract validation: every way a record can break the contract has a reason a human can act on."""

from __future__ import annotations

import orjson
import pytest

from streamrisk.events import InvalidRecord, Validator

NOW = 1_800_000_000_000
V = Validator(frozenset({"CNY"}), max_future_skew_ms=300_000)


def pay(**kw: object) -> dict:
    base = {
        "event_id": "e1", "ts": NOW, "user_id": "u1", "merchant_id": "m1", "amount": 12.5,
        "currency": "CNY", "method": "card",
    }
    base.update(kw)
    return {k: v for k, v in base.items() if v is not ...}


def test_valid_payment_parses_amount_to_exact_minor_units() -> None:
    p = V.payment(b"u1", orjson.dumps(pay(amount=0.1 + 0.2)), NOW)
    assert p.amount == 30
    assert p.device_id == "" and p.country == ""


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{oops", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (orjson.dumps(pay(merchant_id=...)), "missing required field 'merchant_id'"),
        (orjson.dumps(pay(ts="now")), "ts must be an integer"),
        (orjson.dumps(pay(ts=True)), "ts must be an integer"),
        (orjson.dumps(pay(amount="12")), "amount must be a number"),
        (orjson.dumps(pay(amount=0)), "amount must be > 0"),
        (orjson.dumps(pay(amount=-3)), "amount must be > 0 (got -3)"),
        (b'{"event_id":"e","ts":1,"amount":NaN}', "amounts must be finite"),
        (orjson.dumps(pay(method="cheque")), "method must be one of card, credit_line, wallet"),
        (orjson.dumps(pay(currency="USD")), "currency 'USD' is not accepted (accepted: CNY)"),
        (orjson.dumps(pay(ts=NOW + 600_000)), "in the future"),
        (orjson.dumps(pay(user_id="")), "user_id must be a non-empty string"),
        (orjson.dumps(pay(device_id=7)), "device_id must be a string"),
        (None, "empty message value"),
    ],
)
def test_invalid_payment_is_rejected_with_reason(value: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidRecord, match=None) as exc:
        V.payment(b"u1", value, NOW)
    assert reason in str(exc.value)


def test_payment_keyed_by_another_user_is_rejected() -> None:
    with pytest.raises(InvalidRecord, match="message key must be the record's user_id 'u1'"):
        V.payment(b"u2", orjson.dumps(pay()), NOW)


def test_repayment_due_in_future_is_valid_and_knows_if_on_time() -> None:
    rec = {"event_id": "r1", "ts": NOW, "account_type": "user", "account_id": "u1", "amount": 5,
           "currency": "CNY", "due_ts": NOW + 86_400_000}
    r = V.repayment(b"u1", orjson.dumps(rec), NOW)
    assert r.on_time
    late = V.repayment(b"u1", orjson.dumps({**rec, "due_ts": NOW - 1}), NOW)
    assert not late.on_time


def test_order_status_and_chargeback_fields_are_checked() -> None:
    order = {"event_id": "o1", "ts": NOW, "order_id": "A", "merchant_id": "m1", "user_id": "u1",
             "amount": 3, "currency": "CNY", "status": "shipped"}
    with pytest.raises(InvalidRecord, match="status must be one of"):
        V.order(b"m1", orjson.dumps(order), NOW)
    cb = {"event_id": "c1", "ts": NOW, "payment_id": "p1", "user_id": "u1", "merchant_id": "m1",
          "amount": 3, "currency": "CNY"}
    with pytest.raises(InvalidRecord, match="missing required field 'reason'"):
        V.chargeback(b"u1", orjson.dumps(cb), NOW)
