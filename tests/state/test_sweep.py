"""Bounded memory: the in-memory entity budget, and the event-time sweep of idle state in the table."""

from __future__ import annotations

import orjson

from streamrisk.core.processor import Processor
from streamrisk.core.records import Message
from streamrisk.features.entities import U_PAYMENT, UserState, WindowConfig
from streamrisk.settings import DAY_MS, HOUR_MS, Settings
from streamrisk.state.chunks import HeldEvent
from streamrisk.state.kv import SEP, DictKV
from streamrisk.state.store import EntityStore
from streamrisk.state.sweep import PartitionClock, Sweeper, key_partition
from tests.test_processor import Feed

T0 = 1_800_000_000_000
CFG = WindowConfig(windows={"5m": 300_000, "1h": HOUR_MS})
# One partition, so every key's murmur2 partition is the one the messages come on.
SETTINGS = Settings(partitions=1, payment_index_ms=2 * DAY_MS)


def store(kv: DictKV, budget: int) -> EntityStore[UserState]:
    return EntityStore(b"u", kv, lambda: UserState(CFG), CFG.retention_ms, max_cached=budget)


def pay(store_: EntityStore[UserState], user: str, i: int) -> None:
    slot = store_.slot(user, 0)
    store_.add(slot, HeldEvent(f"p{user}-{i}", U_PAYMENT, T0 + i * 1000, 100 + i, ("m", "d")))


def test_least_recently_used_entities_leave_memory_and_come_back_the_same() -> None:
    kv = DictKV()
    s = store(kv, budget=3)
    for i, user in enumerate("abcde"):
        pay(s, user, i)
    pay(s, "a", 10)  # a is now the most recently used
    s.flush()
    assert list(s.slots) == ["d", "e", "a"] and s.evicted == 2
    reference = store(DictKV(), budget=10)
    for i, user in enumerate("abcde"):
        pay(reference, user, i)
    pay(reference, "a", 10)
    for user in "abcde":  # evicted ones are rebuilt from the table on their next touch
        assert s.get(user).features() == reference.get(user).features()
    assert len(s.slots) <= 3
    # The rebuilt entity still knows which events it holds.
    slot = s.slot("b", 0)
    assert not s.add(slot, HeldEvent("pb-1", U_PAYMENT, T0 + 1000, 101, ("m", "d")))


def test_eviction_keeps_entities_with_unflushed_changes() -> None:
    kv = DictKV()
    s = store(kv, budget=2)
    pay(s, "z", 0)
    s.flush()
    s.slots.clear()  # z only in the table now
    for i, user in enumerate("abc"):
        pay(s, user, i + 1)  # three unflushed entities, over the budget
    assert s.get("z") is not None  # a read over the budget evicts, but nothing unflushed
    assert {"a", "b", "c"} <= set(s.slots)
    s.flush()
    assert len(s.slots) == 2
    fresh = store(kv, budget=10)
    for user in "abcz":
        assert fresh.get(user).features()["payment_count_1h"] == 1


def test_a_read_of_an_entity_this_worker_does_not_own_loads_and_keeps_nothing() -> None:
    kv = DictKV()
    s = store(kv, budget=10)
    pay(s, "u", 0)
    s.flush()
    cold = store(kv, budget=10)
    assert cold.get("u", owns=lambda partition: False) is None
    assert not cold.slots and cold.rebuilt == 0
    assert cold.get("u", owns=lambda partition: True) is not None
    assert list(cold.slots) == ["u"]


def test_partition_clock_expires_only_past_keep_plus_grace() -> None:
    clock = PartitionClock(grace_ms=10)
    assert not clock.expired(0, 0, 100)  # no clock yet for partition 0
    clock.advance(0, 200)
    clock.advance(0, 150)  # a late event does not move it back
    assert clock.expired(0, 89, 100) and not clock.expired(0, 90, 100)
    assert not clock.expired(1, 0, 100)




def payment(eid: str, user: str, ts: int, amount: float = 10.0) -> dict:
    return {"event_id": eid, "ts": ts, "user_id": user, "merchant_id": "shop", "amount": amount,
            "currency": "CNY", "method": "card", "device_id": "d"}


def keys_of(kv: DictKV, entity_id: str) -> list[bytes]:
    # Credit accounts (b"cu"/b"cm") have a retention of their own (tests/credit/test_account_sweep.py).
    return [k for k in kv.data if entity_id.encode() in k.split(SEP) and not k.startswith(b"c")]


def test_idle_state_is_swept_from_the_table_by_other_partitions_traffic() -> None:
    kv, feed = DictKV(), Feed()
    proc = Processor(SETTINGS, kv)
    idle = [
        # A chargeback before its payment: held, for a payment that never comes ...
        feed("chargebacks", "idle", {"event_id": "cb1", "ts": T0, "payment_id": "never", "user_id": "idle",
                                     "merchant_id": "shop", "amount": 1.0, "currency": "CNY",
                                     "reason": "fraud"}),
        # ... and a payment that raises USER_CHARGEBACKS (a dedupe entry).
        feed("payments", "idle", payment("p1", "idle", T0 + 1)),
    ]
    proc.run_local(idle, T0)
    # State, index, held chargeback, dedupe, and a review case (the payment is decided review).
    assert {k[:1] for k in keys_of(kv, "idle")} == {b"u", b"x", b"k", b"a", b"r"}
    # Other users keep the partition's clock moving for 31 days: the idle user's dedupe entry
    # expires after 1 h + 1 h of grace, the held chargeback, index and review case after 2 days, its
    # state after 30.
    for day in range(1, 34):
        proc.run_local([feed("payments", f"busy{day}", payment(f"b{day}", f"busy{day}", T0 + day * DAY_MS))],
                       T0 + day * DAY_MS)
        kinds = {k[:1] for k in keys_of(kv, "idle")}
        if day == 3:
            assert kinds == {b"u"}
    assert not keys_of(kv, "idle") and "idle" not in proc.users.slots
    memory = proc.stats()["memory"]
    assert memory["idle_entities_swept"] >= 1 and memory["early_chargebacks_swept"] == 1
    assert memory["idle_payment_indexes_swept"] >= 1 and memory["alert_dedupe_entries_swept"] >= 1
    # The table holds only what the last 30 days (and the grace) need, however many users it saw.
    assert proc.users.get("busy1") is None and proc.users.get("busy2") is None
    assert proc.users.get("busy3") is not None


def test_a_partition_without_traffic_keeps_its_state() -> None:
    # Expiry runs on each partition's own event time: traffic elsewhere expires nothing here.
    settings = Settings(partitions=2)
    here = "u-a"
    p_here = key_partition(here, 2)
    there = next(f"u{i}" for i in range(100) if key_partition(f"u{i}", 2) != p_here)
    p_there = key_partition(there, 2)
    kv = DictKV()
    proc = Processor(settings, kv)

    def msg(user: str, p: int, eid: str, ts: int) -> Message:
        return Message("payments", p, ts, user.encode(), orjson.dumps(payment(eid, user, ts)))

    proc.run_local([msg(here, p_here, "h1", T0)], T0)
    for day in range(1, 40):
        proc.run_local([msg(there, p_there, f"t{day}", T0 + day * DAY_MS)], T0 + day * DAY_MS)
    assert keys_of(kv, here)


def walk_until(sweeper: Sweeper, table: dict[bytes, bytes], walks: int, grow_per_event: int) -> list[int]:
    """Batches of 100 events, each adding `grow_per_event` keys per event, until the sweeper begins
    walk number `walks + 1`; the keys examined per batch."""
    examined, n = [], len(table)
    while sweeper.walks < walks:
        for _ in range(100 * grow_per_event):
            table[b"u" + SEP + b"new%d" % n] = b""
            n += 1
        examined.append(sweeper.step(100))
        assert len(examined) < 10_000, "the walk never ends: the table outgrows it"
    return examined


def test_a_table_of_known_keys_is_walked_at_one_key_per_event() -> None:
    seen: list[bytes] = []
    table = {b"u" + SEP + b"user%d" % i: b"" for i in range(5000)}
    sweeper = Sweeper(lambda: table, {b"u": seen.append})
    assert walk_until(sweeper, table, 1, 0)[0] == 400  # the first walk, no rate known yet: 4 per event
    assert set(seen) == set(table)  # every key handed to its kind's handler
    assert sweeper.keys_per_event == 1.0
    assert walk_until(sweeper, table, 2, 0)[-1] == 100  # the next walk: one per event


def test_a_growing_table_is_walked_faster_than_it_grows() -> None:
    table = {b"u" + SEP + b"user%d" % i: b"" for i in range(5000)}
    sweeper = Sweeper(lambda: table, {})
    # Three new keys per event (a stream of new users): each walk still ends, at 1 + 2 * 3 per event.
    assert walk_until(sweeper, table, 4, 3)[-1] == 700
    assert sweeper.keys_per_event == 7.0


def order(eid: str, merchant: str, ts: int) -> dict:
    return {"event_id": eid, "ts": ts, "order_id": eid, "merchant_id": merchant, "user_id": "buyer",
            "amount": 20.0, "currency": "CNY", "status": "placed"}


def test_a_swept_merchants_summary_is_tombstoned_and_leaves_every_view() -> None:
    # As the worker runs it: process and flush each batch, publish summaries, every worker applies them.
    kv, feed = DictKV(), Feed()
    proc = Processor(SETTINGS, kv)
    published: list[tuple[str, bytes | None]] = []

    def batch(msgs: list[Message], now: int) -> None:
        proc.process(msgs, now)
        proc.flush_state()
        for out in proc.summaries():
            assert out.topic == proc.t_merchant_risk
            published.append((out.key, out.value))
            proc.on_broadcast(Message(out.topic, 0, len(published), out.key.encode(), out.value))

    batch([feed("orders", "gone", order("o-gone", "gone", T0)),
           feed("orders", "stays", order("o0", "stays", T0))], T0)
    assert {"gone", "stays"} <= set(proc.merchant_view)
    for day in range(1, 40):  # "stays" gets an order a day; "gone" nothing
        batch([feed("orders", "stays", order(f"o{day}", "stays", T0 + day * DAY_MS))], T0 + day * DAY_MS)
    assert proc.merchants.get("gone") is None
    assert ("gone", None) in published and ("stays", None) not in published
    assert "gone" not in proc.merchant_view and "stays" in proc.merchant_view
    assert proc.stats()["memory"]["merchant_summaries_tombstoned"] == 1
    # A merchant back after its sweep is summarised again, and no tombstone follows.
    published.clear()
    batch([feed("orders", "gone", order("o-back", "gone", T0 + 40 * DAY_MS))], T0 + 40 * DAY_MS)
    assert [k for k, v in published if k == "gone"] == ["gone"] and ("gone", None) not in published
    assert "gone" in proc.merchant_view


def test_run_local_drops_a_swept_merchant_from_its_own_view() -> None:
    kv, feed = DictKV(), Feed()
    proc = Processor(SETTINGS, kv)
    proc.run_local([feed("orders", "gone", order("o-gone", "gone", T0))], T0)
    assert "gone" in proc.merchant_view
    for day in range(1, 40):
        ts = T0 + day * DAY_MS
        proc.run_local([feed("orders", "stays", order(f"o{day}", "stays", ts))], ts)
    assert "gone" not in proc.merchant_view and "stays" in proc.merchant_view


def test_every_kind_of_key_the_processor_writes_is_registered_and_swept() -> None:
    from streamrisk.state import keys
    from tests.test_processor import pay

    kv, feed = DictKV(), Feed()
    proc = Processor(SETTINGS, kv)
    credit = dict(pay("p1", "u1", T0), method="credit_line")
    proc.run_local([  # a chargeback held for its payment, then a payment alerted on (USER_CHARGEBACKS)
        feed("chargebacks", "u1", {"event_id": "cb1", "ts": T0, "payment_id": "never", "user_id": "u1",
                                   "merchant_id": "m1", "amount": 1.0, "currency": "CNY", "reason": "fraud"}),
        feed("payments", "u1", credit),
        feed("orders", "m1", dict(order("o1", "m1", T0), status="fulfilled")),
    ], T0)
    written = {keys.kind_of(k) for k in kv.data}
    assert written <= set(keys.KINDS)
    assert written >= {keys.USER, keys.MERCHANT, keys.PAYMENT_INDEX, keys.EARLY_CHARGEBACK, keys.ALERT_DEDUPE,
                       keys.MERCHANT_DECISIONS, keys.CREDIT_USER, keys.ORDER_INDEX}
    assert set(proc.sweeper.handlers) == set(keys.KINDS)
