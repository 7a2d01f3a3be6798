"""The worker core without Kafka: decisions, features, dedupe, and recovery from the state table."""

from __future__ import annotations

import orjson
import pytest

from streamrisk.core.processor import Processor
from streamrisk.core.records import Message
from streamrisk.settings import DAY_MS, MINUTE_MS, Settings
from streamrisk.state.kv import DictKV

T0 = 1_800_000_000_000
SETTINGS = Settings()


class Feed:
    """Offsets and partitions like a consumer would see them."""

    def __init__(self) -> None:
        self.offset = 0

    def __call__(self, topic: str, key: str, value: dict) -> Message:
        self.offset += 1
        return Message(topic, 0, self.offset, key.encode(), orjson.dumps(value))


def pay(eid: str, user: str, ts: int, amount: float = 10.0, merchant: str = "m1", device: str = "d1") -> dict:
    return {"event_id": eid, "ts": ts, "user_id": user, "merchant_id": merchant, "amount": amount,
            "currency": "CNY", "method": "card", "device_id": device}


def run(proc: Processor, msgs: list[Message]) -> list:
    out = proc.process(msgs, now_ms=T0 + 40 * DAY_MS)
    proc.flush_state()
    return out


def test_payment_features_span_the_contract_windows() -> None:
    feed, proc = Feed(), Processor(SETTINGS, DictKV())
    #  t:  0      2m     10m
    #      10     30     20   (amounts, user u)
    msgs = [
        feed("payments", "u", pay("a", "u", T0, 10.0, merchant="m1")),
        feed("payments", "u", pay("b", "u", T0 + 2 * MINUTE_MS, 30.0, merchant="m2", device="d2")),
        feed("payments", "u", pay("c", "u", T0 + 10 * MINUTE_MS, 20.0, merchant="m1")),
    ]
    run(proc, msgs)
    f = proc.users.get("u").features()
    assert f["payment_count_5m"] == 1 and f["payment_amount_sum_5m"] == 20.0
    assert f["payment_count_1h"] == 3 and f["payment_amount_sum_1h"] == 60.0
    assert f["payment_amount_mean_1h"] == pytest.approx(20.0)
    assert f["payment_amount_std_1h"] == pytest.approx((200 / 3) ** 0.5)
    assert f["payment_amount_max_24h"] == 30.0
    assert f["distinct_merchants_1h"] == 2 and f["distinct_devices_1h"] == 2


def test_duplicate_payment_changes_nothing_and_gets_no_decision() -> None:
    feed, proc = Feed(), Processor(SETTINGS, DictKV())
    out = run(proc, [feed("payments", "u", pay("a", "u", T0)), feed("payments", "u", pay("a", "u", T0))])
    assert sum(1 for o in out if o.topic == "risk-decisions") == 1
    assert proc.counters.duplicates == 1
    assert proc.users.get("u").features()["payment_count_30d"] == 1


def test_state_rebuilt_from_the_table_equals_live_state() -> None:
    kv, feed = DictKV(), Feed()
    live = Processor(SETTINGS, kv)
    msgs = [feed("payments", f"u{i % 3}", pay(f"p{i}", f"u{i % 3}", T0 + i * 7_000, 1.0 + i, f"m{i % 5}"))
            for i in range(200)]
    msgs += [feed("orders", "m1", {"event_id": f"o{i}", "ts": T0 + i * 5_000, "order_id": f"O{i}",
                                   "merchant_id": "m1", "user_id": f"u{i % 4}", "amount": 5.0,
                                   "currency": "CNY", "status": "placed"}) for i in range(100)]
    run(live, msgs)
    recovered = Processor(SETTINGS, kv)  # a new worker, same table
    for u in ("u0", "u1", "u2"):
        assert recovered.users.get(u).features() == live.users.get(u).features()
    assert recovered.merchants.get("m1").features() == live.merchants.get("m1").features()
    # And the recovered worker still knows which events it has seen.
    again = recovered.process([feed("payments", "u0", pay("p0", "u0", T0, 1.0, "m0"))], now_ms=T0)
    assert not [o for o in again if o.topic == "risk-decisions"]


def test_changelog_bytes_per_event_do_not_grow_with_held_events() -> None:
    kv, feed = DictKV(), Feed()
    proc = Processor(SETTINGS, kv)

    def bytes_for(n: int, start: int) -> float:
        before = len(kv.writes)
        for i in range(start, start + n):  # one event per batch: the worst case for rewrites
            run(proc, [feed("payments", "u", pay(f"p{i}", "u", T0 + i * 1000))])
        return sum(len(k) + len(v or b"") for k, v in kv.writes[before:]) / n

    early = bytes_for(256, 0)
    bytes_for(3000, 256)
    late = bytes_for(256, 3256)
    assert late <= early * 1.2


def test_chunks_leave_the_table_when_their_events_leave_the_widest_window() -> None:
    kv, feed = DictKV(), Feed()
    proc = Processor(SETTINGS, kv)
    run(proc, [feed("payments", "u", pay(f"old{i}", "u", T0 + i)) for i in range(100)])
    held_before = len(kv.data)
    run(proc, [feed("payments", "u", pay("new", "u", T0 + 31 * DAY_MS))])
    assert len(kv.data) < held_before
    assert any(v is None for _, v in kv.writes)  # tombstones for the expired chunks
    assert Processor(SETTINGS, kv).users.get("u").features()["payment_count_30d"] == 1


def test_every_series_rebuilt_in_bulk_equals_live_state() -> None:
    # All four input topics plus the merchant-events loop back, with late events, so every user
    # and merchant series goes through both the incremental path and the bulk rebuild.
    kv, feed = DictKV(), Feed()
    live = Processor(SETTINGS, kv)
    statuses = ("placed", "fulfilled", "refunded", "cancelled")
    msgs = []
    for i in range(240):
        ts = T0 + i * 3 * 3_600_000 - (2 * DAY_MS if i % 17 == 0 else 0)  # ~30 days, some late
        user, merchant = f"u{i % 3}", f"m{i % 2}"
        msgs.append(feed("payments", user, pay(f"p{i}", user, ts, 1.0 + i % 7, merchant, f"d{i % 4}")))
        if i % 5 == 0:
            msgs.append(feed("chargebacks", user, {
                "event_id": f"c{i}", "ts": ts + 1, "payment_id": f"p{i}", "user_id": user,
                "merchant_id": merchant, "amount": 2.0, "currency": "CNY", "reason": "fraud"}))
        if i % 3 == 0:
            kind, account = ("user", f"u{i // 6 % 3}") if i // 3 % 2 else ("merchant", merchant)
            msgs.append(feed("repayments", account, {
                "event_id": f"r{i}", "ts": ts + 2, "account_type": kind, "account_id": account,
                "amount": 3.0, "currency": "CNY", "due_ts": ts + (DAY_MS if i % 4 else -DAY_MS)}))
        msgs.append(feed("orders", merchant, {
            "event_id": f"o{i}", "ts": ts + 3, "order_id": f"O{i // 4}", "merchant_id": merchant,
            "user_id": user, "amount": 5.0 + i % 3, "currency": "CNY", "status": statuses[i // 2 % 4]}))
    out = run(live, msgs)
    loop = [Message(o.topic, 0, n, o.key.encode(), o.value)
            for n, o in enumerate(out) if o.topic == live.t_merchant_events]
    assert loop
    run(live, loop)
    recovered = Processor(SETTINGS, kv)
    for u in ("u0", "u1", "u2"):
        assert recovered.users.get(u).features() == live.users.get(u).features()
        assert live.users.get(u).features()["repayment_on_time_rate_30d"] > 0
    for m in ("m0", "m1"):
        f = live.merchants.get(m).features()
        assert min(f["fulfilled_amount_sum_30d"], f["refund_count_30d"], f["chargeback_count_30d"]) > 0
        assert recovered.merchants.get(m).features() == live.merchants.get(m).features()
        assert recovered.merchants.get(m).latest == live.merchants.get(m).latest
    assert recovered.users.rebuilt == 3 and recovered.merchants.rebuilt == 2


def test_late_and_too_old_events_are_counted_and_late_ones_still_decided() -> None:
    feed, proc = Feed(), Processor(SETTINGS, DictKV())
    #  t: T0-31d (too old)   T0-2h (late, beyond 1 h lateness)   T0 (in order)
    msgs = [
        feed("payments", "u", pay("now", "u", T0)),
        feed("payments", "u", pay("late", "u", T0 - 2 * 3_600_000)),
        feed("payments", "u", pay("ancient", "u", T0 - 31 * DAY_MS)),
    ]
    out = run(proc, msgs)
    decided = sorted(o.value["event_id"] for o in out if o.topic == "risk-decisions")
    assert decided == ["ancient", "late", "now"]
    stats = proc.stats()
    assert stats["late_events"] == 1
    assert stats["too_old_events"] == 1
    assert proc.users.get("u").features()["payment_count_24h"] == 2


def _merchant_decisions(proc: Processor, merchant: str) -> list[tuple]:
    """(payment event id, user, action, score, reasons) of the merchant's kept decisions, newest first."""
    return [(f.event_id[1:], f.user_id, o.action, o.score, list(o.reasons))
            for f in proc.merchant_decisions.recent(merchant) if (o := f.outcome) is not None]


def _decided(out: list) -> list[tuple]:
    return [(d["event_id"], d["user_id"], d["action"], d["score"], d["reasons"])
            for o in out if o.topic == "risk-decisions" for d in (o.value,)]


def test_the_merchant_keeps_its_last_decisions_once_each_and_after_a_restart() -> None:
    kv, feed = DictKV(), Feed()
    settings = SETTINGS.replace(merchant_recent_decisions=4)
    proc = Processor(settings, kv)
    # Six users pay m1, then one of them 12 times within a minute (the last two declined for velocity),
    # in one batch, in arrival order but for the first payment, which comes last.
    payments = [pay(f"p{i}", f"u{i}", T0 + i * MINUTE_MS, 10.0 + i) for i in range(6)]
    payments += [pay(f"b{i}", "u9", T0 + 6 * MINUTE_MS + i * 1000, 20.0) for i in range(12)]
    msgs = [feed("payments", p["user_id"], p) for p in payments[1:] + payments[:1]]
    out = proc.run_local(msgs, now_ms=T0 + DAY_MS)
    decided = _decided(out)
    assert [d[2] for d in decided].count("decline") == 2, decided
    kept = _merchant_decisions(proc, "m1")
    # The newest four payments (by payment time), with the decisions risk-decisions carried.
    assert kept == [next(d for d in decided if d[0] == f"b{i}") for i in (11, 10, 9, 8)]
    # The same input read again (a crash before the offsets were committed) adds nothing.
    proc.run_local(msgs, now_ms=T0 + DAY_MS)
    assert _merchant_decisions(proc, "m1") == kept
    # A new worker on the same table answers the same, and goes on from there.
    restarted = Processor(settings, kv)
    assert _merchant_decisions(restarted, "m1") == kept
    newer = feed("payments", "u1", pay("newer", "u1", T0 + 7 * MINUTE_MS, 5.0))
    restarted.run_local([newer], now_ms=T0 + DAY_MS)
    assert [k[0] for k in _merchant_decisions(restarted, "m1")] == ["newer", "b11", "b10", "b9"]


def test_a_payment_decided_before_a_crash_reaches_the_merchant_with_its_decision() -> None:
    kv, feed = DictKV(), Feed()
    proc = Processor(SETTINGS, kv)
    msg = feed("payments", "u", pay("p1", "u", T0, 12.0))
    first = run(proc, [msg])  # decided and state flushed; its forwarded event was never delivered
    restarted = Processor(SETTINGS, kv)
    again = run(restarted, [msg])  # read again after the crash: the stored decision is forwarded
    loop = [Message(o.topic, 0, n, o.key.encode(), o.value)
            for n, o in enumerate(again) if o.topic == restarted.t_merchant_events]
    run(restarted, loop)
    assert _merchant_decisions(restarted, "m1") == _decided(first)
