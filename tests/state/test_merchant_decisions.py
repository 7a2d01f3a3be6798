"""Each merchant's last decisions, kept by its owner from the forwarded payments: bounded, in payment-time
order, never twice for one payment, and the same after a restart from the table."""

from __future__ import annotations

import orjson

from streamrisk.settings import DAY_MS
from streamrisk.state.kv import SEP, DictKV
from streamrisk.state.merchant_decisions import KIND, MerchantDecisions
from streamrisk.state.sweep import PartitionClock

T0 = 1_800_000_000_000
RETENTION = 30 * DAY_MS


def forwarded(i: int, ts: int, merchant: str = "m1") -> bytes:
    """A payment forwarded with its decision, as the user side's processor writes it."""
    return orjson.dumps([f"pp{i}", 13, ts, 1000 + i, merchant, f"u{i}", "approve", 0.01 * i, "v1"])


def add(kept: MerchantDecisions, raw: bytes) -> None:
    record = orjson.loads(raw)
    kept.add(0, record[4], record[0], record[2], raw)


def ids(kept: MerchantDecisions, merchant: str = "m1") -> list[str]:
    return [f.event_id for f in kept.recent(merchant)]


def test_the_newest_payments_are_kept_newest_first_and_at_most_keep() -> None:
    kept = MerchantDecisions(DictKV(), keep=3, retention_ms=RETENTION, max_cached=10)
    for i in range(5):
        add(kept, forwarded(i, T0 + i))
    assert ids(kept) == ["pp4", "pp3", "pp2"]
    assert kept.recent("m1")[0].row() == orjson.loads(forwarded(4, T0 + 4))  # the record as forwarded
    assert kept.recent("nobody") == []


def test_late_payments_take_their_place_in_payment_time_and_too_old_ones_are_not_kept() -> None:
    kept = MerchantDecisions(DictKV(), keep=3, retention_ms=RETENTION, max_cached=10)
    #  arrival: p10 (t=10), p30 (t=30), p20 (t=20, late), p5 (t=5, older than every kept one), p25
    for i in (10, 30, 20, 5, 25):
        add(kept, forwarded(i, T0 + i))
    assert ids(kept) == ["pp30", "pp25", "pp20"]


def test_a_payment_forwarded_again_is_kept_once() -> None:
    kv = DictKV()
    kept = MerchantDecisions(kv, keep=3, retention_ms=RETENTION, max_cached=10)
    for i in range(4):
        add(kept, forwarded(i, T0 + i))
    kept.flush()
    writes = len(kv.writes)
    for i in range(4):  # read again after a crash: pp0 left the list already, the others are in it
        add(kept, forwarded(i, T0 + i))
    assert ids(kept) == ["pp3", "pp2", "pp1"]
    assert kept.flush() == 0 and len(kv.writes) == writes  # nothing changed, nothing written


def test_the_list_is_written_once_per_flush_and_read_back_by_a_new_worker() -> None:
    kv = DictKV()
    kept = MerchantDecisions(kv, keep=4, retention_ms=RETENTION, max_cached=10)
    for i in range(6):
        add(kept, forwarded(i, T0 + i))
        add(kept, forwarded(100 + i, T0 + i, merchant="m2"))
    assert kept.flush() == 2  # one record per merchant for the whole batch
    assert [k for k, _ in kv.writes] == [KIND + SEP + b"m1", KIND + SEP + b"m2"]
    restarted = MerchantDecisions(kv, keep=4, retention_ms=RETENTION, max_cached=10)
    assert restarted.recent("m1") == kept.recent("m1") and ids(restarted) == ["pp5", "pp4", "pp3", "pp2"]
    # It goes on from the table: a replay is still kept once, a new payment pushes the oldest out.
    add(restarted, forwarded(5, T0 + 5))
    add(restarted, forwarded(6, T0 + 6))
    restarted.flush()
    assert ids(MerchantDecisions(kv, keep=4, retention_ms=RETENTION, max_cached=10)) == [
        "pp6", "pp5", "pp4", "pp3"]


def test_memory_holds_at_most_max_cached_merchants_and_answers_the_same_from_the_table() -> None:
    kv = DictKV()
    kept = MerchantDecisions(kv, keep=2, retention_ms=RETENTION, max_cached=2)
    for i in range(5):  # one merchant per batch
        add(kept, forwarded(i, T0 + i, merchant=f"m{i}"))
        kept.flush()
        assert len(kept._kept) <= 2
    assert [ids(kept, f"m{i}") for i in range(5)] == [[f"pp{i}"] for i in range(5)]


def test_keep_zero_keeps_nothing() -> None:
    kv = DictKV()
    kept = MerchantDecisions(kv, keep=0, retention_ms=RETENTION, max_cached=2)
    add(kept, forwarded(1, T0))
    assert kept.flush() == 0 and kv.writes == [] and ids(kept) == []


def test_a_list_whose_newest_payment_left_the_retention_is_swept() -> None:
    kv, clock = DictKV(), PartitionClock(grace_ms=0)
    kept = MerchantDecisions(kv, keep=3, retention_ms=RETENTION, max_cached=10, clock=clock,
                             partition_of=lambda _: 0)
    add(kept, forwarded(1, T0))
    add(kept, forwarded(2, T0 + DAY_MS, merchant="m2"))
    kept.flush()
    clock.advance(0, T0 + RETENTION + DAY_MS // 2)  # past m1's newest payment, not m2's
    for key in list(kv.data):
        kept.sweep_key(key)
    assert ids(kept) == [] and ids(kept, "m2") == ["pp2"] and kept.swept == 1
    assert list(kv.data) == [KIND + SEP + b"m2"]
    # A worker that has not read the list into memory decides from the table.
    restarted = MerchantDecisions(kv, keep=3, retention_ms=RETENTION, max_cached=10, clock=clock,
                                  partition_of=lambda _: 0)
    restarted.sweep_key(KIND + SEP + b"m2")
    assert restarted.swept == 0
    clock.advance(0, T0 + RETENTION + 2 * DAY_MS)
    restarted.sweep_key(KIND + SEP + b"m2")
    assert restarted.swept == 1 and kv.data == {}
