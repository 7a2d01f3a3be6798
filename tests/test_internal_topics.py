"""Internal topics are checked like inputs: a record of merchant-events, merchant-risk, risk-rules or
shadow-decisions that no worker wrote as it is is dead-lettered (or left out) and counted, and never
reaches state, moves a partition's clock or stops a worker."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from streamrisk.backtest.shadow_report import well_formed
from streamrisk.core.merchant_view import MerchantView, encode_summary
from streamrisk.core.processor import Processor
from streamrisk.core.records import Forwarded, Message
from streamrisk.features.entities import M_CHARGEBACK, M_PAYMENT, M_PLACED
from streamrisk.settings import DAY_MS, Settings
from streamrisk.state.kv import SEP, DictKV

T0 = 1_800_000_000_000
NOW = T0 + 1000
SETTINGS = Settings()
EVENTS = "streamrisk-merchant-events"


def payment(eid: str, user: str, ts: int, merchant: str = "shop") -> bytes:
    return orjson.dumps({"event_id": eid, "ts": ts, "user_id": user, "merchant_id": merchant, "amount": 10.0,
                         "currency": "CNY", "method": "card", "device_id": "d"})


def forwarded(row: object, key: bytes | None = b"shop", offset: int = 7) -> Message:
    value = row if isinstance(row, bytes) or row is None else orjson.dumps(row)
    return Message(EVENTS, 0, offset, key, value)  # type: ignore[arg-type]


def dead_letters(out: list) -> list[dict]:
    return [o.value for o in out if o.topic == "dead-letters"]


def keys_of(kv: DictKV, entity_id: str) -> list[bytes]:
    return [k for k in kv.data if entity_id.encode() in k.split(SEP) and not k.startswith(b"c")]


DECIDED = ["pp1", M_PAYMENT, T0, 1000, "shop", "u1", "approve", 0.1, "v1"]

# (row or raw bytes, message key, a phrase the dead letter's reason holds)
HOSTILE = [
    (b"{not json", b"shop", "not valid JSON"),
    (None, b"shop", "tombstone"),
    ({"event_id": "p1"}, b"shop", "JSON array"),
    (["pp1", M_PAYMENT, T0], b"shop", "got 3 items"),
    (["pp1", M_PAYMENT, T0, 1000, "shop", "u1", "approve"], b"shop", "got 7 items"),
    (["pp1", M_PAYMENT, T0 + 365 * DAY_MS, 1000, "shop"], b"shop", "ms in the future"),
    (["pp1", M_PAYMENT, "yesterday", 1000, "shop"], b"shop", "ts must be an integer"),
    (["pp1", M_PAYMENT, -5, 1000, "shop"], b"shop", "ts must be >= 0"),
    (["op1", M_PLACED, T0, 1000, "shop"], b"shop", "event_id must be 'p' or 'c'"),
    ([7, M_PAYMENT, T0, 1000, "shop"], b"shop", "event_id must be 'p' or 'c'"),
    (["p", M_PAYMENT, T0, 1000, "shop"], b"shop", "event_id must be a non-empty string"),
    (["pp1", M_CHARGEBACK, T0, 1000, "shop"], b"shop", "series of event"),
    (["pp1", True, T0, 1000, "shop"], b"shop", "series of event"),
    (["pp1", M_PAYMENT, T0, 10.5, "shop"], b"shop", "amount must be an integer"),
    (["pp1", M_PAYMENT, T0, 0, "shop"], b"shop", "amount must be an integer"),
    # Beyond 64 bits: orjson reads it as a float.
    (b'["pp1", 13, 1800000000000, 1' + b"0" * 30 + b', "shop"]', b"shop", "amount must be an integer"),
    (["pp1", M_PAYMENT, T0, 10**17, "shop"], b"shop", "amount must be an integer"),
    (["pp1", M_PAYMENT, T0, 1000, "sh\x1fop"], b"sh\x1fop", "control characters"),
    (["pp1", M_PAYMENT, T0, 1000, "shop"], b"other", "message key must be the merchant_id"),
    (["pp1", M_PAYMENT, T0, 1000, "shop"], None, "message key must be the merchant_id"),
    (["cc1", M_CHARGEBACK, T0, 1000, "shop", "u1", "approve", 0.1, "v1"], b"shop", "only a payment"),
    ([*DECIDED[:6], "allow", *DECIDED[7:]], b"shop", "action must be one of"),
    ([*DECIDED[:6], ["approve"], *DECIDED[7:]], b"shop", "action must be one of"),
    ([*DECIDED[:7], 1.5, *DECIDED[8:]], b"shop", "score must be a number in 0..1"),
    ([*DECIDED[:7], True, *DECIDED[8:]], b"shop", "score must be a number in 0..1"),
    ([*DECIDED[:7], "0.1", *DECIDED[8:]], b"shop", "score must be a number in 0..1"),
    ([*DECIDED[:8], ""], b"shop", "rules_version must be a non-empty string"),
    ([*DECIDED, {"r": 1}], b"shop", "reason must be a non-empty string"),
    ([*DECIDED[:5], "", *DECIDED[6:]], b"shop", "user_id must be a non-empty string"),
    (b"[" + b" " * 70_000 + b"]", b"shop", "STREAMRISK_MAX_RECORD_BYTES"),
]


@pytest.mark.parametrize(("row", "key", "reason"), HOSTILE, ids=[f"{i}" for i in range(len(HOSTILE))])
def test_a_forwarded_event_not_as_workers_write_it_is_dead_lettered_with_its_reason(
    row: object, key: bytes | None, reason: str
) -> None:
    kv = DictKV()
    proc = Processor(SETTINGS, kv)
    out = proc.process([forwarded(row, key)], now_ms=NOW)
    proc.flush_state()
    [dead] = dead_letters(out)
    assert dead["error"].startswith("internal merchant-events record at partition 0 offset 7: "), dead
    assert reason in dead["error"], dead["error"]
    assert dead["source_topic"] == EVENTS and dead["offset"] == 7
    assert proc.counters.internal_rejected == 1 and proc.counters.dead_letters == 1
    assert proc.counters.failed_records == 0, "rejected by the checks, not by an exception"
    assert proc.clock.ts == {} and proc.clock.newest == -1, "a rejected record moved the clock"
    assert proc.merchants.get("shop") is None and not kv.data
    assert [o for o in out if o.topic != "dead-letters"] == []


def test_a_far_future_forwarded_event_leaves_the_clock_and_the_partition_state_alone() -> None:
    kv = DictKV()
    proc = Processor(SETTINGS, kv)
    proc.run_local([Message("payments", 0, 1, b"u1", payment("p1", "u1", T0))], NOW)
    assert keys_of(kv, "u1") and proc.merchants.get("shop") is not None
    clock_before = dict(proc.clock.ts)
    # A year ahead: accepted, it would move partition 0's clock past every retention, and the sweep
    # would delete the user's and the merchant's state.
    hostile = forwarded(["pp-evil", M_PAYMENT, T0 + 365 * DAY_MS, 1000, "shop"], offset=99)
    out = proc.process([hostile], now_ms=NOW)
    proc.flush_state()
    assert "ms in the future" in dead_letters(out)[0]["error"]
    assert proc.clock.ts == clock_before
    # Traffic goes on for a while; the sweep walks the whole table many times over.
    for i in range(50):
        proc.run_local([Message("payments", 0, 2 + i, b"u2", payment(f"q{i}", "u2", T0 + 2 + i))], NOW)
    assert proc.sweeper.walks >= 2
    assert keys_of(kv, "u1"), "the partition's state was swept"
    assert proc.users.get("u1").features()["payment_count_30d"] == 1
    assert proc.merchants.get("shop").features()["payment_count_30d"] == 51
    assert proc.stats()["internal_rejected"] == 1


def test_a_valid_forwarded_event_is_applied_and_its_decision_kept_on_one_line() -> None:
    kv = DictKV()
    proc = Processor(SETTINGS, kv)
    # Valid (a long version too: a ruleset's version has no length limit), but not on one line.
    decided = [*DECIDED[:8], "v" * 300, "HIGH_SCORE"]
    pretty = orjson.dumps(decided, option=orjson.OPT_INDENT_2)
    out = proc.process([forwarded(["cc1", M_CHARGEBACK, T0, 500, "shop"], offset=1),
                        forwarded(pretty, offset=2)], now_ms=NOW)
    proc.flush_state()
    assert dead_letters(out) == [] and proc.counters.internal_rejected == 0
    features = proc.merchants.get("shop").features()
    assert features["payment_count_30d"] == 1 and features["chargeback_count_30d"] == 1
    assert proc.clock.ts == {0: T0}
    assert [f.row() for f in proc.merchant_decisions.recent("shop")] == [decided]


def test_a_summary_with_the_right_schema_but_not_numbers_is_counted_and_not_read() -> None:
    view = MerchantView(("a", "b"))
    view.put("good", encode_summary(view.schema, T0, {"a": 1, "b": 2.5}))
    view.put("strings", orjson.dumps([view.schema, T0, "1", "x"]))
    view.put("nested", orjson.dumps([view.schema, T0, 1, {"b": 2}]))
    view.put("short", orjson.dumps([view.schema, T0, 1]))
    view.put("other", orjson.dumps(["ffffffff", T0, 1, 2]))
    assert view.get("good") == {"a": 1, "b": 2.5}
    for merchant in ("strings", "nested", "short", "other"):
        assert view.get(merchant, None) is None, merchant
    assert view.bad == 4
    assert "strings" not in view  # dropped: asked again, nothing is decoded again


def test_a_control_record_whose_loading_raises_is_rejected_like_an_invalid_ruleset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proc = Processor(SETTINGS, DictKV())
    before = proc.rules.ruleset.version

    def explode(raw: object) -> object:
        raise KeyError("unforeseen")

    monkeypatch.setattr("streamrisk.rules.control.load_ruleset", explode)
    out = proc.on_broadcast(Message("risk-rules", 0, 3, b"main", b'{"version": "x", "rules": []}'))
    [dead] = dead_letters(out)
    assert "rejected" in dead["error"] and "KeyError" in dead["error"]
    assert proc.rules.ruleset.version == before and proc.rules.rejected == 1
    assert proc.stats()["dead_letter_classes"] == {"ruleset": 1}


@pytest.mark.parametrize("record", [
    {"event_id": "p1"},
    {"event_id": "p1", "rules_version": "s", "live_rules_version": "l", "action": "decline",
     "live_action": "approve", "reasons": "BIG", "live_reasons": [], "ts": T0},
    {"event_id": ["p1"], "rules_version": "s", "live_rules_version": "l", "action": "decline",
     "live_action": "approve", "reasons": [], "live_reasons": [], "ts": T0},
    {"event_id": "p1", "rules_version": "s", "live_rules_version": "l", "action": "decline",
     "live_action": "approve", "reasons": [1], "live_reasons": [], "ts": "now"},
])
def test_a_shadow_record_not_as_workers_write_it_is_left_out_of_the_report(record: dict) -> None:
    assert not well_formed(record)


def test_a_shadow_record_as_workers_write_it_is_read() -> None:
    assert well_formed({"event_id": "p1", "rules_version": "s", "live_rules_version": "l",
                        "action": "decline", "live_action": "approve", "reasons": ["BIG"],
                        "live_reasons": [], "ts": T0, "user_id": "u", "shadow": True})


JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20), st.sampled_from(["pp1", "cc1", "shop", "approve", "u1", "v1", "p", "c"]),
    st.sampled_from([M_PAYMENT, M_CHARGEBACK, T0, T0 + 365 * DAY_MS, 1000]),
)
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@st.composite
def near_valid_rows(draw: st.DrawFn) -> list:
    """A worker's row with one item replaced, one cut or one added (or none: then it is applied)."""
    row = list(draw(st.sampled_from([DECIDED, DECIDED[:5], ["cc1", M_CHARGEBACK, T0, 500, "shop"],
                                     [*DECIDED, "HIGH_SCORE"]])))
    change = draw(st.sampled_from(["none", "replace", "cut", "add"]))
    i = draw(st.integers(0, len(row) - 1))
    if change == "replace":
        row[i] = draw(JSON_VALUES)
    elif change == "cut":
        del row[i]
    elif change == "add":
        row.insert(i, draw(JSON_VALUES))
    return row


@settings(max_examples=200, deadline=None)
@given(row=st.one_of(st.lists(JSON_VALUES, max_size=12), near_valid_rows()),
       key=st.sampled_from([b"shop", b"shop", b"other", None]))
def test_any_json_on_the_merchant_events_topic_is_applied_or_dead_lettered_and_never_raises(
    row: list, key: bytes | None
) -> None:
    proc = Processor(SETTINGS, DictKV())
    out = proc.process([forwarded(row, key)], now_ms=NOW)
    proc.flush_state()
    assert proc.counters.failed_records == 0, dead_letters(out)
    event("dead-lettered" if dead_letters(out) else "applied")
    if dead_letters(out):
        assert proc.counters.internal_rejected == 1 and proc.clock.ts == {}
    else:  # applied: a well-formed forwarded event, within the skew
        assert proc.merchants.get("shop") is not None
        assert proc.clock.ts[0] <= NOW + SETTINGS.max_future_skew_ms


def test_forwarded_events_keep_their_array_format_on_the_internal_topic() -> None:
    # The merchant-events wire format is unchanged by the named record: a rolling upgrade has workers
    # of both versions reading each other's records.
    proc = Processor(SETTINGS, DictKV())
    pay = Message("payments", 0, 41, b"u1", payment("e1", "u1", T0))
    out = proc.process([pay], now_ms=NOW)
    decision = next(o.value for o in out if o.topic == "risk-decisions")
    sent = [orjson.loads(o.value) for o in out if o.topic == EVENTS]
    assert sent == [["pe1", M_PAYMENT, T0, 1000, "shop", "u1", decision["action"], decision["score"],
                     decision["rules_version"], *decision["reasons"]]]
    bare = ["cc1", M_CHARGEBACK, T0, 500, "shop"]
    for row in (bare, sent[0], DECIDED):
        assert Forwarded.of(row).row() == row
    assert Forwarded.of(bare).outcome is None
    f = Forwarded.of(DECIDED)
    assert f.outcome is not None and (f.user_id, f.outcome.action) == (DECIDED[5], DECIDED[6])
