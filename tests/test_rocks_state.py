"""The RocksDB state table (runtime/faust/rocks.py): reads and writes through the KV seam, the undo of an
aborted transaction, and the trust decision at a restart: a partition left dirty (killed mid-run) is
wiped, one marked clean at a committed checkpoint is read on from the changelog offset it recorded.

    worker A writes p0, p1 ── checkpoint commits ── mark clean (offsets) ── writes p1 again ── killed
    worker B opens p0: clean, offset kept (reads the tail) | p1: dirty, wiped (restores it all)
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest
from faust.types import TP

from streamrisk.core.partitioning import kafka_partition
from streamrisk.runtime.faust.app import build_app
from streamrisk.runtime.faust.restore import apply_in_bulk
from streamrisk.runtime.faust.rocks import RocksKV, StateStore, last_offset
from streamrisk.settings import Settings
from streamrisk.state.sweep import Sweeper

PARTITIONS = 4


@dataclass
class Meta:  # what the changelog's delivery futures resolve to (aiokafka RecordMetadata)
    offset: int


@dataclass
class Rec:  # the fields of an aiokafka ConsumerRecord that recovery reads
    offset: int
    key: bytes
    value: bytes | None


def user_key(user: str) -> bytes:
    return b"u\x1f" + user.encode()


def users_of(partition: int, n: int) -> list[str]:
    out, i = [], 0
    while len(out) < n:
        if kafka_partition(f"user{i}".encode(), PARTITIONS) == partition:
            out.append(f"user{i}")
        i += 1
    return out


def open_kv(data_dir: Path) -> tuple[RocksKV, StateStore]:
    app, _ = build_app(Settings(data_dir=data_dir, store="rocksdb", partitions=PARTITIONS))
    kv = app.kv
    assert isinstance(kv, RocksKV)
    kv.bind()
    kv.keep_partitions(set(range(PARTITIONS)))
    store = kv.store
    assert isinstance(store, StateStore)
    for p in range(PARTITIONS):  # as Faust does for the partitions assigned
        store._db_for_partition(p)
    return kv, store


def delivered(kv: RocksKV, partition: int, offset: int) -> None:
    fut = asyncio.get_event_loop_policy().get_event_loop().create_future()
    fut.set_result(Meta(offset))
    kv._last_sent[partition] = (fut, 1, None)


def test_reads_see_writes_and_deletes_of_owned_partitions_only(tmp_path: Path) -> None:
    kv, _ = open_kv(tmp_path)
    [a] = users_of(0, 1)
    [b] = users_of(1, 1)
    kv.put(0, user_key(a), b"A")
    kv.put(1, user_key(b), b"B")
    assert kv.get(user_key(a)) == b"A" and kv.get(user_key(b)) == b"B"
    kv.delete(0, user_key(a))
    assert kv.get(user_key(a)) is None
    assert kv.take() == [(0, user_key(a), b"A"), (1, user_key(b), b"B"), (0, user_key(a), None)]
    kv.keep_partitions({0})  # partition 1 moved to another worker
    assert kv.get(user_key(b)) is None


def test_an_aborted_transaction_is_undone(tmp_path: Path) -> None:
    kv, _ = open_kv(tmp_path)
    a, b = users_of(2, 2)
    kv.log.keep_undo()
    kv.put(2, user_key(a), b"v1")
    kv.take()  # sent in a transaction, which committed
    kv.committed()
    kv.put(2, user_key(a), b"v2")
    kv.put(2, user_key(b), b"new")
    assert kv.roll_back() == 2
    assert kv.get(user_key(a)) == b"v1" and kv.get(user_key(b)) is None
    assert kv.take() == []


def test_a_restart_reuses_partitions_marked_clean_and_wipes_dirty_ones(tmp_path: Path) -> None:
    kv, store = open_kv(tmp_path)
    [a] = users_of(0, 1)
    [b] = users_of(1, 1)
    kv.put(0, user_key(a), b"A")
    kv.put(1, user_key(b), b"B1")
    kv.take()
    delivered(kv, 0, 41)
    delivered(kv, 1, 7)
    assert kv.mark_clean() == []  # the checkpoint committed both
    kv.put(1, user_key(b), b"B2")  # then a write the changelog may never see: the worker is killed
    assert store.dirty == {1}
    for db in store._dbs.values():  # as a killed process leaves them: the files stay as they are
        db.close()
    store._dbs.clear()

    kv2, store2 = open_kv(tmp_path)
    assert kv2.get(user_key(a)) == b"A"
    assert kv2.get(user_key(b)) is None  # wiped: restored from the changelog
    assert store2.persisted_offset(TP("t", 0)) == 41  # recovery reads partition 0 from there on
    assert store2.persisted_offset(TP("t", 1)) is None  # and partition 1 from the start
    assert (store2.wiped, store2.reused) == (1, 1)


def test_a_partition_with_a_write_not_yet_sent_stays_dirty(tmp_path: Path) -> None:
    kv, store = open_kv(tmp_path)
    [a] = users_of(3, 1)
    kv.put(3, user_key(a), b"A")
    delivered(kv, 3, 5)
    assert kv.mark_clean() == [3]  # its changelog record was never taken, so never committed
    assert store.dirty == {3}


def test_recovery_in_bulk_writes_records_and_their_offset(tmp_path: Path) -> None:
    kv, store = open_kv(tmp_path)
    app = kv.table.app
    tp = TP(kv.table.changelog_topic.get_topic_name(), 1)
    recovery = app.tables.recovery
    recovery.in_recovery = True
    recovery.active_tps.add(tp)
    recovery.tp_to_table[tp] = kv.table
    recovery.active_offsets[tp] = 9
    [b, c] = users_of(1, 2)
    records = [Rec(9, user_key(c), b"stale"), Rec(10, user_key(b), b"1"), Rec(11, user_key(c), b"2"),
               Rec(12, user_key(b), None)]
    assert apply_in_bulk(app, tp, records)
    assert kv.get(user_key(b)) is None and kv.get(user_key(c)) == b"2"
    assert recovery.active_offsets[tp] == 12
    assert store.persisted_offset(tp) == 12 and store.restored == 3
    assert store.dirty == set()  # restored records are committed ones: nothing to distrust


def test_the_sweep_walks_every_key_on_disk_lazily(tmp_path: Path) -> None:
    kv, _ = open_kv(tmp_path)
    keys = set()
    for p in range(PARTITIONS):
        for u in users_of(p, 700):  # more than one chunk of the walk per partition
            kv.put(p, user_key(u), b"x")
            keys.add(user_key(u))
    seen: list[bytes] = []
    sweeper = Sweeper(kv.contents, {b"u": seen.append})
    while sweeper.walks == 0:
        sweeper.step(100)
    assert set(seen) >= keys and len(seen) == len(keys)


@pytest.fixture(autouse=True)
def _loop() -> None:
    asyncio.set_event_loop(asyncio.new_event_loop())


def test_the_offset_of_the_last_record_sent_is_exact() -> None:
    loop = asyncio.get_event_loop_policy().get_event_loop()

    def done(offset: int) -> asyncio.Future:
        fut = loop.create_future()
        fut.set_result(Meta(offset))
        return fut

    first, batch = done(40), done(40)  # a batch's first record's own future, then the batch's
    assert last_offset(first, 1, None) == 40
    assert last_offset(batch, 3, first) == 43  # three records after the first: 41, 42, 43
    assert last_offset(done(50), 1, batch) == 50  # the first record of the next batch
    failed = loop.create_future()
    failed.set_exception(RuntimeError("not delivered"))
    assert last_offset(failed, 1, batch) is None


def test_a_standby_partition_follows_the_changelog_in_bulk_with_its_offset(tmp_path: Path) -> None:
    kv, store = open_kv(tmp_path)
    kv.keep_partitions({0})  # partition 2 is another worker's: this one keeps a standby copy
    app = kv.table.app
    tp = TP(kv.table.changelog_topic.get_topic_name(), 2)
    recovery = app.tables.recovery
    recovery.standby_tps.add(tp)
    recovery.tp_to_table[tp] = kv.table
    [a] = users_of(2, 1)
    assert apply_in_bulk(app, tp, [Rec(0, user_key(a), b"1"), Rec(1, user_key(a), b"2")])
    assert recovery.standby_offsets[tp] == 1 and store.persisted_offset(tp) == 1
    assert kv.get(user_key(a)) is None  # not read while it is a standby
    kv.keep_partitions({0, 2})  # the active owner died: this worker takes the partition over
    assert kv.get(user_key(a)) == b"2"
    assert store.dirty == set()  # committed records only: trusted as they are
