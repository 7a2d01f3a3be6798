"""The state table on local disk: one RocksDB (rocksdict) per changelog partition under the data dir.

A partition's database is trusted at a restart only if it was left at a committed checkpoint: the
worker marks it dirty (durably, before its first live write) and clean again, with the changelog offset
it has reached, once a checkpoint has committed everything written to it (at shutdown and before a
rebalance). A database found dirty (the worker was killed, or its last checkpoint failed) may hold
writes of an aborted or uncommitted transaction, or writes the changelog never received: it is wiped
and the partition is restored from the changelog. A clean one is read on from its offset, so a
restarted worker reads only the changelog written since (docs/state.md).

Databases written only by recovery or as a standby replica hold committed changelog records and the
offset they reached (Faust's `apply_changelog_batch`), so they are always trusted.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import rocksdict
from faust.stores import STORES
from faust.stores import rocksdb as faust_rocksdb
from faust.types import TP

from ...core.partitioning import kafka_partition
from ...state.keys import KINDS
from ...state.kv import SEP
from ..write_log import WriteLog

log = logging.getLogger(__name__)

SCHEME = "streamrisk-rocksdb"
STORES.aliases[SCHEME] = f"{__name__}:StateStore"  # the Table's store=URL resolves here

# Bookkeeping keys in each partition's database, beside the state's own keys (which all hold SEP).
OFFSET_KEY = faust_rocksdb.Store.offset_key  # the last changelog offset the database holds
STATE_KEY = b"__streamrisk\x00state__"  # b"dirty", or b"clean <unix seconds>"
DIRTY = b"dirty"
# A clean database older than this is not trusted either: the changelog's compaction drops a tombstone
# after `delete.retention.ms` (Kafka's default: 24 h), and a key deleted while the worker was away
# would then come back from the local copy.
MAX_CLEAN_AGE_S = 12 * 3600
_WALK_CHUNK = 512  # keys read per iterator by the background sweep's walk


class _Options(faust_rocksdb.RocksDBOptions):
    """One block cache and one memtable budget for all the partitions of a worker, so its memory is
    bounded whatever the number of partitions (Faust gives each partition 2 GiB of cache)."""

    def __init__(self, memory_bytes: int) -> None:
        super().__init__(use_rocksdict=True, write_buffer_size=min(64 << 20, max(memory_bytes // 8, 1 << 20)),
                         max_write_buffer_number=2, max_open_files=512)
        self.cache = rocksdict.Cache(memory_bytes)
        # Memtables count against the cache: one limit for both.
        self.buffers = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            memory_bytes // 4, False, self.cache
        )

    def as_options(self) -> rocksdict.Options:
        opts = rocksdict.Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_max_open_files(self.max_open_files or 512)
        opts.set_write_buffer_size(self.write_buffer_size)
        opts.set_max_write_buffer_number(self.max_write_buffer_number)
        opts.set_write_buffer_manager(self.buffers)
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(10, False)
        table.set_block_cache(self.cache)
        # Index and filter blocks live in the cache too (else they grow with the data, in memory).
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        opts.set_block_based_table_factory(table)
        return opts

    def open(self, path: Any, *, read_only: bool = False) -> rocksdict.Rdict:
        return rocksdict.Rdict(str(path), options=self.as_options())


class StateStore(faust_rocksdb.Store):
    """Faust's RocksDB store, with a worker-wide memory budget, databases closed when their partition
    goes, and the dirty/clean marks of the module docstring."""

    memory_bytes = 256 << 20  # set from Settings by the app (build_app)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rocksdb_options = _Options(self.memory_bytes)
        self.dirty: set[int] = set()  # partitions written live since they were opened or marked clean
        self.restored = 0  # changelog records applied (recovery and standby)
        self.wiped = 0  # partitions found dirty (or too old) and restored from the changelog
        self.reused = 0  # partitions opened clean, read on from their offset

    # -- opening: the trust decision
    def _open_for_partition(self, partition: int) -> rocksdict.Rdict:
        path = self.partition_path(partition)
        db = self.rocksdb_options.open(path)
        mark = db.get(STATE_KEY)
        why = None
        if mark == DIRTY:
            why = "it was not closed at a committed checkpoint (killed, or its last checkpoint failed)"
        elif mark is not None and time.time() - float(mark.split(b" ", 1)[1]) > MAX_CLEAN_AGE_S:
            why = f"it is older than {MAX_CLEAN_AGE_S // 3600} h (changelog tombstones may be gone)"
        if why is not None:
            db.close()
            shutil.rmtree(path, ignore_errors=True)
            db = self.rocksdb_options.open(path)
            self.wiped += 1
            log.warning("local state of partition %d wiped, restored from the changelog: %s", partition, why)
        elif db.get(OFFSET_KEY) is not None:
            self.reused += 1
            log.info("local state of partition %d reused from changelog offset %s", partition,
                     db.get(OFFSET_KEY).decode())
        return db

    def writable(self, partition: int) -> rocksdict.Rdict:
        """The partition's database, marked dirty before the first live write since it was clean."""
        db = self._db_for_partition(partition)
        if partition not in self.dirty:
            db.put(STATE_KEY, DIRTY)  # the write-ahead log keeps it before every write that follows
            self.dirty.add(partition)
        return db

    def mark_clean(self, offsets: Mapping[int, int]) -> list[int]:
        """Mark every dirty partition with an offset in `offsets` (the last changelog offset written to
        it, all committed) clean; returns the partitions left dirty."""
        left = []
        for partition in sorted(self.dirty):
            db = self._dbs.get(partition)
            offset = offsets.get(partition)
            if db is None:
                continue
            if offset is None:
                left.append(partition)
                continue
            before = db.get(OFFSET_KEY)
            if before is not None:
                offset = max(offset, int(before))
            batch = rocksdict.WriteBatch(raw_mode=True)
            batch.put(OFFSET_KEY, str(offset).encode())
            batch.put(STATE_KEY, b"clean %d" % int(time.time()))
            db.write(batch)
            db.flush_wal(True)
        self.dirty = set(left)
        return left

    # -- restoring
    def restore_records(self, partition: int, records: Sequence[Any], seen: int | None) -> int | None:
        """Apply changelog records (aiokafka records, in offset order) past offset `seen` in one write,
        with the offset they reach; returns that offset (None if none was past `seen`)."""
        batch = rocksdict.WriteBatch(raw_mode=True)
        last = None
        n = 0
        for record in records:
            if seen is not None and record.offset <= seen:
                continue
            if record.value is None:
                batch.delete(record.key)
            else:
                batch.put(record.key, record.value)
            last = record.offset
            n += 1
        if last is not None:
            batch.put(OFFSET_KEY, str(last).encode())
            self._db_for_partition(partition).write(batch)
            self.restored += n
        return last

    def apply_changelog_batch(self, batch: Any, to_key: Callable[[Any], Any],
                              to_value: Callable[[Any], Any]) -> None:
        batch = list(batch)
        super().apply_changelog_batch(batch, to_key, to_value)
        self.restored += len(batch)

    # -- closing
    def revoke_partitions(self, table: Any, tps: set[TP]) -> None:
        for tp in tps:
            if tp.topic in table.changelog_topic.topics:
                db = self._dbs.pop(tp.partition, None)
                self.dirty.discard(tp.partition)  # its mark on disk stays as it is
                if db is not None:
                    db.close()

    async def stop(self) -> None:
        # Faust stops its tables before the worker's last checkpoint (App._stop_consumer, then
        # on_before_shutdown): the databases stay open for that checkpoint's clean marks, and
        # `close` shuts them after it (or the process's exit does).
        pass

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()
        self._dbs.clear()

    def keys_of(self, partition: int, prefix: bytes = b"") -> Iterator[bytes]:
        """The state keys (with `prefix`) of an open partition, read a chunk per iterator so no iterator
        is open between two steps of the caller (the database may be closed between them)."""
        start = prefix
        first = True
        while True:
            db = self._dbs.get(partition)
            if db is None:
                return
            chunk = []
            for key in db.keys(from_key=start):
                if not first and key == start:
                    continue
                if not key.startswith(prefix) or len(chunk) >= _WALK_CHUNK:
                    break
                chunk.append(key)
            first = False
            for key in chunk:
                if SEP in key:  # not the bookkeeping keys
                    yield key
            if len(chunk) < _WALK_CHUNK:
                return
            start = chunk[-1]

    def estimated_keys(self, partitions: set[int]) -> int:
        total = 0
        for partition in partitions:
            db = self._dbs.get(partition)
            if db is not None:
                total += db.property_int_value("rocksdb.estimate-num-keys") or 0
        return total


class _Keys:
    """The owned partitions' keys, for the background sweep and the review index (sweep.py,
    reviews.py): walked lazily, never listed whole (the table may not fit in memory)."""

    def __init__(self, kv: RocksKV) -> None:
        self._kv = kv

    def walk(self, prefix: bytes = b"") -> Iterator[bytes]:
        kv = self._kv
        for partition in sorted(kv.owned):
            if kv.store is not None and partition in kv.owned:
                yield from kv.store.keys_of(partition, prefix)

    def __iter__(self) -> Iterator[bytes]:
        return self.walk()

    def __len__(self) -> int:
        kv = self._kv
        return 0 if kv.store is None else kv.store.estimated_keys(kv.owned)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self._kv.get(key) is not None


class RocksKV:
    """The state store's KV seam over the RocksDB table (app.FaustKV's counterpart for the memory store).

    Reads go to the database of the key's partition (murmur2 of its entity id: state/keys.py), and
    only of a partition this worker owns; writes go to it at once, and are produced to the changelog
    by the worker as FaustKV's are. Exactly-once: the undo log puts back what an aborted transaction
    wrote, as FaustKV does.
    """

    def __init__(self, table: Any, partitions: int) -> None:
        self.table = table
        self.partitions = partitions
        self.store: StateStore | None = None
        self.log = WriteLog()  # changelog records to produce; exactly-once, the undo log
        self.dropped = 0  # nothing is dropped: a lost partition's database is closed
        self.owned: set[int] = set()
        self._writable: dict[int, rocksdict.Rdict] = {}
        self._memo: dict[bytes, int] = {}  # entity id -> partition (bounded)
        # Changelog partition -> (delivery future of its latest record, records sent with that future,
        # the future before it): `last_offset`.
        self._last_sent: dict[int, Any] = {}
        self._keys = _Keys(self)

    def bind(self) -> None:
        self.store = self.table.data

    def _partition(self, key: bytes) -> int | None:
        parts = key.split(SEP)
        kind = KINDS.get(parts[0])
        if kind is None or len(parts) <= kind.id_field:
            return None
        entity = parts[kind.id_field]
        memo = self._memo
        p = memo.get(entity)
        if p is None:
            if len(memo) >= 65536:
                memo.clear()
            p = memo[entity] = kafka_partition(entity, self.partitions)
        return p

    def get(self, key: bytes) -> bytes | None:
        p = self._partition(key)
        store = self.store
        if store is None:
            return None
        if p is None:  # no registered kind (none are written): look in every owned partition
            for q in self.owned:
                db = store._dbs.get(q)
                value = None if db is None else db.get(key)
                if value is not None:
                    return value
            return None
        if p not in self.owned:
            return None
        db = store._dbs.get(p)
        return None if db is None else db.get(key)

    def contents(self) -> _Keys:
        return self._keys

    def _db(self, partition: int) -> rocksdict.Rdict:
        db = self._writable.get(partition)
        if db is None:
            assert self.store is not None
            db = self._writable[partition] = self.store.writable(partition)
        return db

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        db = self._db(partition)
        log = self.log
        undo = log.undo
        if undo is not None and key not in undo:
            undo[key] = (partition, db.get(key))
        db.put(key, value)
        log.pending.append((partition, key, value))

    def delete(self, partition: int, key: bytes) -> None:
        db = self._db(partition)
        log = self.log
        undo = log.undo
        if undo is not None and key not in undo:
            undo[key] = (partition, db.get(key))
        db.delete(key)
        log.pending.append((partition, key, None))

    def keep_partitions(self, partitions: set[int]) -> None:
        """After a rebalance: read only the partitions owned now (Faust's store closes the others)."""
        self.owned = set(partitions)
        self._writable = {p: db for p, db in self._writable.items() if p in self.owned}

    def committed(self) -> None:
        self.log.committed()

    def roll_back(self) -> int:
        return self.log.roll_back(self._restore)

    def _restore(self, key: bytes, partition: int, value: bytes | None) -> None:
        db = self._db(partition)
        if value is None:
            db.delete(key)
        else:
            db.put(key, value)

    def take(self) -> list[tuple[int, bytes, bytes | None]]:
        return self.log.take()

    # -- clean marks
    def track(self, producer: Any, changelog: str) -> _TrackedProducer:
        """`producer` (Delivery's), noting the delivery of each changelog partition's latest record."""
        return _TrackedProducer(producer, changelog, self._last_sent)

    def mark_clean(self) -> list[int]:
        """After a checkpoint committed everything written: mark the partitions written since their last
        mark clean, at the offset of the last record delivered to each. Returns those left dirty (a
        record not delivered, or a write not yet sent: they are wiped if the worker stops now)."""
        store = self.store
        if store is None:
            return []
        offsets: dict[int, int] = {}
        if not self.log.pending:
            for partition, (fut, count, before) in self._last_sent.items():
                offset = last_offset(fut, count, before)
                if offset is not None:
                    offsets[partition] = offset
        self._writable.clear()  # the next write marks its partition dirty again
        return store.mark_clean(offsets)

    def close(self) -> None:
        """At shutdown, after the last checkpoint (and its clean marks)."""
        self._writable.clear()
        if self.store is not None:
            self.store.close()

    def stats(self) -> dict[str, Any]:
        store = self.store
        return {
            "kind": "rocksdb",
            "restored_records": 0 if store is None else store.restored,
            "partitions_wiped": 0 if store is None else store.wiped,
            "partitions_reused": 0 if store is None else store.reused,
            "dirty_partitions": [] if store is None else sorted(store.dirty),
        }


class _TrackedProducer:
    def __init__(self, inner: Any, changelog: str, last: dict[int, Any]) -> None:
        self._inner = inner
        self._changelog = changelog
        self._last = last

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None) -> Any:
        fut = await self._inner.send(topic, key, value, partition)
        if topic == self._changelog and partition is not None:
            last = self._last.get(partition)
            if last is not None and last[0] is fut:
                self._last[partition] = (fut, last[1] + 1, last[2])
            else:
                self._last[partition] = (fut, 1, None if last is None else last[0])
        return fut


def last_offset(fut: Any, count: int, before: Any) -> int | None:
    """The offset of the last of `count` records sent with delivery future `fut` (None if not delivered).

    The producer (appender.py) answers a batch's first record with that record's own future and each
    record it appends to the batch after it with the batch's future, which gives the batch's first
    offset: a batch future that follows its first record's future (same offset) stands for the records
    after that one.
    """
    if not _delivered(fut):
        return None
    offset = fut.result().offset
    if _delivered(before) and before.result().offset == offset:
        return offset + count
    return offset + count - 1


def _delivered(fut: Any) -> bool:
    return fut is not None and fut.done() and not fut.cancelled() and fut.exception() is None
