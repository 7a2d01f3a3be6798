"""Hostile input through the worker's core in-process: every invalid record dead-lettered once with its
original key and a reason, every valid payment decided once, nothing raised (the seeded stream of
tests/hostile.py, and hypothesis; the broker version: tests/integration)."""

from __future__ import annotations

import base64
import itertools
import json
from collections import Counter
from typing import Any

import orjson
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from streamrisk.core.events import ACCOUNT_TYPES, ORDER_STATUSES, PAYMENT_METHODS
from streamrisk.core.partitioning import kafka_partition
from streamrisk.core.processor import Processor
from streamrisk.core.reason_class import reason_class
from streamrisk.core.records import Message
from streamrisk.core.sinks import PRODUCER_REQUEST_MAX
from streamrisk.settings import Settings
from streamrisk.state.kv import DictKV
from tests.hostile import Hostile

NOW = 1_800_000_000_000


def test_hostile_stream_is_sorted_into_decisions_and_dead_letters() -> None:
    settings = Settings()
    proc = Processor(settings, DictKV(), check_partitions=True)
    sent = Hostile(seed=11, now_ms=NOW, partitions=settings.partitions).stream(6000, 1500, 400)
    msgs = []
    for offset, s in enumerate(sent):
        partition = s.partition
        if partition is None:
            partition = kafka_partition(s.key, settings.partitions) if s.key else 0
        msgs.append(Message(s.topic, partition, offset, s.key, s.value))
    out = []
    for i in range(0, len(msgs), 500):
        out += proc.run_local(msgs[i:i + 500], now_ms=NOW)

    letters = [o.value for o in out if o.topic == "dead-letters"]
    invalid = {i for i, s in enumerate(sent) if not s.valid}
    assert len(invalid) >= 3000 and {s.kind for s in sent} >= {"mispartitioned", "deep nesting"}
    assert Counter(d["offset"] for d in letters) == Counter(invalid), [
        (sent[d["offset"]].kind, d["error"]) for d in letters if d["offset"] not in invalid
    ][:5]
    assert all(d["error"] for d in letters)
    decided = Counter(o.value["event_id"] for o in out if o.topic == "risk-decisions")
    expected = Counter(s.event_id for s in sent if s.valid and s.topic == "payments")
    assert decided == expected
    advanced = Counter(o.value["event_id"] for o in out if o.topic == "advance-decisions")
    valid_advances = [orjson.loads(s.value)["event_id"] for s in sent if s.valid and s.topic == "advances"]
    assert advanced == Counter(valid_advances)
    assert len(advanced) > 50
    assert proc.stats()["failed_records"] == 0
    assert proc.stats()["mispartitioned"] == sum(s.kind == "mispartitioned" for s in sent)


# -- property: every hostile record, however broken, gets exactly one dead letter with its key and reason

SETTINGS = Settings()
KEY_FIELD = {"payments": "user_id", "orders": "merchant_id", "repayments": "account_id",
             "chargebacks": "user_id", "advances": "merchant_id"}
ENUMS = {"payments": ("method", PAYMENT_METHODS), "orders": ("status", ORDER_STATUSES),
         "repayments": ("account_type", ACCOUNT_TYPES)}
# The reason classes docs/contract.md documents; processing_failed would mean a record made the core raise.
DOCUMENTED = {
    "not_json", "missing_field", "wrong_key", "wrong_partition", "too_large", "bad_value", "ruleset",
}

ids = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=12)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
# A key of any shape: none, empty, not UTF-8, far longer than an id.
any_key = (st.none() | st.just(b"") | st.binary(max_size=40) | st.text(max_size=40).map(str.encode)
           | st.integers(300, 400_000).map(lambda n: b"\xff" + b"k" * n))


@st.composite
def valid_record(draw: st.DrawFn, topic: str) -> dict[str, Any]:
    ts = draw(st.integers(NOW - 30 * 86_400_000, NOW))
    amount = draw(st.sampled_from([0.01, 12.5, 10**12]))
    rec: dict[str, Any] = {"event_id": draw(ids), "ts": ts, "amount": amount, "currency": "CNY"}
    if topic == "payments":
        rec.update(user_id=draw(ids), merchant_id=draw(ids), method="card")
    elif topic == "orders":
        rec.update(order_id=draw(ids), merchant_id=draw(ids), user_id=draw(ids), status="placed")
    elif topic == "repayments":
        rec.update(account_type="user", account_id=draw(ids), due_ts=ts)
    elif topic == "advances":
        rec.update(merchant_id=draw(ids))
    else:
        rec.update(payment_id=draw(ids), user_id=draw(ids), merchant_id=draw(ids), reason=draw(st.text()))
    return rec


def wrong_type(name: str) -> st.SearchStrategy[Any]:
    """A JSON value `name` may never hold."""
    if name in ("ts", "due_ts"):
        return st.text() | st.booleans() | st.none() | st.lists(st.integers(), max_size=2) \
            | st.floats(allow_nan=False).filter(lambda f: not f.is_integer()) | st.integers(max_value=-1)
    if name == "amount":
        return st.text() | st.booleans() | st.none() | st.lists(st.integers(), max_size=2) \
            | st.integers(max_value=0) | st.floats(max_value=0.004) \
            | st.floats(min_value=10**12 + 1, allow_infinity=False) | st.integers(10**12 + 1, 10**40)
    return (st.integers() | st.booleans() | st.none() | st.floats(allow_nan=False)
            | st.lists(st.text(max_size=3), max_size=2)
            | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@st.composite
def hostile(draw: st.DrawFn) -> tuple[str, bytes | None, bytes | None, int | None, str]:
    """(topic, key, value, partition or None for the key's own, how it was broken): never a valid record."""
    topic = draw(st.sampled_from(list(KEY_FIELD)))
    rec = draw(valid_record(topic))
    key_field = KEY_FIELD[topic]
    key: bytes | None = rec[key_field].encode()
    how = draw(st.sampled_from([
        "not JSON", "not UTF-8", "not an object", "tombstone", "missing field", "wrong type", "unknown enum",
        "unaccepted currency", "far future", "control character", "long id", "huge record", "deep nesting",
        "NaN", "bad key", "mispartitioned",
    ]))
    partition = None
    if how == "not JSON":
        value = draw(st.binary(max_size=60).filter(lambda b: not _is_json_object(b)))
        return topic, draw(any_key), value, None, how
    if how == "not UTF-8":
        raw = dumps(rec)
        at = draw(st.integers(1, len(raw) - 1))
        broken = draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80"]))
        return topic, key, raw[:at] + broken + raw[at:], None, how
    if how == "not an object":
        return topic, key, dumps(draw(json_values.filter(lambda v: not isinstance(v, dict)))), None, how
    if how == "tombstone":
        return topic, draw(any_key), draw(st.sampled_from([None, b""])), None, how
    if how == "missing field":
        del rec[draw(st.sampled_from(sorted(rec)))]
    elif how == "wrong type":
        name = draw(st.sampled_from(sorted(rec)))
        rec[name] = draw(wrong_type(name))
        if name == key_field:
            key = draw(any_key)
    elif how == "unknown enum":
        if topic == "advances":  # no enum: an empty currency instead
            rec["currency"] = ""
        elif topic not in ENUMS:
            rec["reason"] = ""
        else:
            name, allowed = ENUMS[topic]
            rec[name] = draw(st.text().filter(lambda s: s not in allowed))
    elif how == "unaccepted currency":
        rec["currency"] = draw(st.text().filter(lambda s: s not in SETTINGS.currencies))
    elif how == "far future":
        rec["ts"] = draw(st.integers(NOW + SETTINGS.max_future_skew_ms + 1, 2**63))
    elif how == "control character":
        name = draw(st.sampled_from([f for f in rec if f.endswith("_id")]))
        at = draw(st.integers(0, len(rec[name])))
        control = draw(st.sampled_from(["\x00", "\x1f", "\t", "\x7f", "\x85"]))
        rec[name] = rec[name][:at] + control + rec[name][at:]
        key = rec[key_field].encode()
    elif how == "long id":
        name = draw(st.sampled_from([f for f in rec if f.endswith("_id")]))
        rec[name] = "🦊" * draw(st.integers(257, 100_000))  # its key, too, when it is the key field
        key = rec[key_field].encode()
    elif how == "huge record":
        rec["note"] = "x" * draw(st.integers(SETTINGS.max_record_bytes, 300_000))
    elif how == "deep nesting":
        depth = draw(st.integers(1030, 5000))
        rec["extra"] = "DEEP"
        return topic, key, dumps(rec).replace(b'"DEEP"', b"[" * depth + b"]" * depth), None, how
    elif how == "NaN":
        rec["amount"] = 7
        literal = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity"]))
        return topic, key, dumps(rec).replace(b'"amount":7', b'"amount":' + literal), None, how
    elif how == "bad key":
        key = draw(any_key.filter(lambda k: k != rec[key_field].encode()))
    elif how == "mispartitioned":
        right = kafka_partition(key, SETTINGS.partitions)
        partition = (right + draw(st.integers(1, SETTINGS.partitions - 1))) % SETTINGS.partitions
    return topic, key, dumps(rec), partition, how


def dumps(value: Any) -> bytes:
    """JSON as a producer might write it (integers of any size too, which orjson refuses)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(orjson.loads(raw), dict)
    except orjson.JSONDecodeError:
        return False


@st.composite
def hostile_internal(draw: st.DrawFn) -> tuple[str, bytes | None, bytes | None, int | None, str]:
    """A record of the internal merchant-events topic that no worker wrote as it is."""
    key = draw(any_key)
    value = draw(
        st.none() | st.binary(max_size=60)
        | json_values.filter(lambda v: not isinstance(v, list) or len(v) < 5).map(dumps)
        | st.tuples(st.sampled_from(["pp1", "cc1", "x"]), st.integers(), st.integers(), st.integers(), ids)
        .filter(lambda row: row[4].encode() != key).map(lambda row: dumps(list(row)))
    )
    return "merchant-events", key, value, None, "internal"


@given(st.lists(hostile(), min_size=1, max_size=12), st.lists(hostile_internal(), max_size=3))
@settings(max_examples=500, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much])
def test_each_hostile_record_gets_one_dead_letter_with_its_original_key_and_a_documented_reason(
    inputs: list[tuple[str, bytes | None, bytes | None, int | None, str]],
    internal: list[tuple[str, bytes | None, bytes | None, int | None, str]],
) -> None:
    proc = _processor()
    records = inputs + internal
    batch = []
    for topic, key, value, partition, _ in records:
        deployed = proc.t_merchant_events if topic == "merchant-events" else topic
        if partition is None:
            partition = kafka_partition(key, SETTINGS.partitions) if key else 0
        batch.append(Message(deployed, partition, next(_offsets), key, value))
    failed = proc.counters.failed_records

    out = proc.process(batch, now_ms=NOW)

    assert [o.topic for o in out] == ["dead-letters"] * len(batch), [r[4] for r in records]
    for m, letter, (*_, how) in zip(batch, out, records, strict=True):
        event(how)  # --hypothesis-show-statistics: how often each way of breaking a record ran
        d = letter.value
        assert (d["source_topic"], d["partition"], d["offset"]) == (m.topic, m.partition, m.offset), how
        assert letter.key == m.key, (how, m.key and m.key[:40], letter.key and letter.key[:40])
        assert "key_truncated" not in d
        where = f"record at partition {m.partition} offset {m.offset}: "
        assert where in d["error"] and d["error"].split(where, 1)[1], (how, d["error"])
        assert reason_class(d["error"]) in DOCUMENTED, (how, d["error"])
        if not d.get("value_truncated"):
            raw = m.value or b""
            forwarded = base64.b64decode(d["value"]) if d.get("value_encoding") else d["value"].encode()
            assert forwarded == raw, how
        assert len(orjson.dumps(d)) + len(letter.key or b"") <= PRODUCER_REQUEST_MAX - 200
    assert proc.counters.failed_records == failed  # caught by validation: nothing raised


def test_a_rejected_ruleset_is_dead_lettered_with_its_key() -> None:
    proc = _processor()
    for key in (b"main", b"\xff\xfe", b"r" * 100_000, None):
        for value in (b"{not json", b"[1]", dumps({"version": "v9", "rules": [{"nope": 1}]})):
            m = Message(proc.t_rules, 0, next(_offsets), key, value)
            [letter] = proc.on_broadcast(m)
            assert letter.key == key and letter.value["error"]
            assert reason_class(letter.value["error"], ruleset=True) == "ruleset"


_offsets = itertools.count()
_shared: list[Processor] = []


def _processor() -> Processor:
    """One processor for every example (invalid records touch no state); building one takes a while."""
    if not _shared:
        _shared.append(Processor(SETTINGS, DictKV(), check_partitions=True))
    return _shared[0]
