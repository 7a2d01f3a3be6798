"""Contract validation: every way a record can break the contract has a reason a human can act on."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrisk.core.events import MAX_AMOUNT, MAX_ID_CHARS, InvalidRecord, Payment, Validator

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


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (pay(amount=1e17), "amount must be at most 1000000000000"),
        (pay(amount=10**18), "amount must be at most"),
        (pay(amount=-1e308), "amount must be > 0 (got -1e+308)"),
        (pay(user_id="X\x1f0"), "user_id must not contain control characters (got U+001F at index 1"),
        (pay(merchant_id="m\x00"), "merchant_id must not contain control characters"),
        (pay(event_id="e\u0085"), "event_id must not contain control characters (got U+0085"),
        (pay(user_id="u" * 257), "user_id must be at most 256 characters (got 257)"),
        (pay(device_id="d" * 5000), "device_id must be at most 256 characters (got 5000)"),
        (pay(device_id="d\n"), "device_id must not contain control characters"),
        (pay(country="x" * 300), "country must be at most 256 characters (got 300)"),
    ],
)
def test_ids_amounts_and_strings_are_bounded(record: dict, reason: str) -> None:
    key = record["user_id"].encode()
    with pytest.raises(InvalidRecord) as exc:
        V.payment(key, orjson.dumps(record), NOW)
    assert reason in str(exc.value)


def test_amount_bound_is_configurable() -> None:
    strict = Validator(frozenset({"CNY"}), 300_000, max_amount=100)
    assert strict.payment(b"u1", orjson.dumps(pay(amount=100)), NOW).amount == 10_000
    with pytest.raises(InvalidRecord, match="amount must be at most 100 "):
        strict.payment(b"u1", orjson.dumps(pay(amount=100.01)), NOW)


def test_record_over_the_size_limit_is_rejected_before_parsing() -> None:
    small = Validator(frozenset({"CNY"}), 300_000, max_record_bytes=2048)
    big = orjson.dumps(pay(note="x" * 3000))  # an extra field, valid but for its size
    reason = r"record is \d+ bytes \(key and value\), more than the limit of 2048"
    with pytest.raises(InvalidRecord, match=reason):
        small.payment(b"u1", big, NOW)
    assert V.payment(b"u1", big, NOW).user_id == "u1"  # the default limit is 64 KiB


def test_error_texts_never_repeat_a_huge_value() -> None:
    roomy = Validator(frozenset({"CNY"}), 300_000, max_record_bytes=10**8)
    huge = "Y" * 5_000_000
    cases = [
        (pay(currency=huge), b"u1", "currency must be at most 256 characters"),
        (pay(ts=huge), b"u1", "ts must be an integer"),
        (pay(amount=[1] * 100_000), b"u1", "amount must be a number"),
        (pay(), huge.encode(), "message key must be the record's user_id 'u1'"),
    ]
    for record, key, reason in cases:
        with pytest.raises(InvalidRecord) as exc:
            roomy.payment(key, orjson.dumps(record), NOW)
        assert reason in str(exc.value)
        assert len(str(exc.value)) < 300


def test_odd_but_valid_unicode_ids_and_extra_fields_are_accepted() -> None:
    for uid in ["🦊🦊", "用户-42", "\u200d\u0301zwj", "مستخدم", "u" * 256]:
        p = V.payment(uid.encode(), orjson.dumps(pay(user_id=uid, extra={"deep": [1, 2]})), NOW)
        assert p.user_id == uid


# -- any bytes at all: a typed record within every bound, or InvalidRecord; never another exception

JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=300)
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
FIELDS = ["event_id", "ts", "user_id", "merchant_id", "amount", "currency", "method", "device_id",
          "order_id", "status", "account_type", "account_id", "due_ts", "payment_id", "reason"]


@st.composite
def near_valid(draw: st.DrawFn) -> tuple[bytes | None, bytes]:
    """A valid payment with some fields replaced by arbitrary JSON, or arbitrary bytes."""
    if draw(st.booleans()):
        return draw(st.none() | st.binary(max_size=20)), draw(st.binary(max_size=200))
    record: dict = pay()
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        record[name] = draw(JSON_VALUES)
    key = record.get("user_id")
    # json, not orjson: it writes what orjson refuses (integers beyond 64 bits, NaN, lone surrogates).
    raw = json.dumps(record).encode()
    return (key.encode("utf-8", "surrogatepass") if isinstance(key, str) else None), raw


@settings(max_examples=400, deadline=None)
@given(near_valid())
def test_any_input_is_a_bounded_record_or_an_invalid_record(kv: tuple[bytes | None, bytes]) -> None:
    key, value = kv
    try:
        p = V.payment(key, value, NOW)
    except InvalidRecord as exc:
        assert 0 < len(str(exc)) < 400
        return
    assert isinstance(p, Payment) and 0 < p.amount <= MAX_AMOUNT * 100
    for ident in (p.event_id, p.user_id, p.merchant_id):
        assert 0 < len(ident) <= MAX_ID_CHARS
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in ident)
