"""Entity state kept in a key-value table with a changelog: held events in bounded chunks.

Each entity (a user or a merchant) appends its held events to numbered chunks of at most
`CHUNK_EVENTS` records. Only the open chunk is rewritten, once per batch per entity, so the changelog
bytes per event are bounded by the chunk size and never grow with the events held in the window. A chunk
whose newest event has left the widest window is deleted (one tombstone per chunk), so the compacted
changelog shrinks with the window. A worker that (re)gains a partition rebuilds an entity's in-memory
windows from its chunks on first touch, in bulk (one `Entity.rebuild` per entity, not one `apply` per event).

Memory is bounded: at most `max_cached` entities stay in memory, least recently used leave first,
and only once their changes are flushed; the next touch rebuilds them from the table. An entity idle
for longer than the retention is removed from the table by the background sweep (sweep.py).
"""

from __future__ import annotations

import gc
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import orjson

from .chunks import HeldEvent, chunk_rows, newest_ts
from .kv import KV, SEP, packed

if TYPE_CHECKING:
    from .sweep import PartitionClock

CHUNK_EVENTS = 32
# Entities of one kind kept in memory (Settings.max_cached_entities); cost: docs/benchmarks.md.
MAX_CACHED = 20_000


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC (restoring its previous state) around a bulk rebuild.

    A rebuild allocates millions of small lists and tuples that all stay alive until it ends,
    so the collector's passes over them free nothing yet took over half the rebuild time of a
    1M-event entity. Nothing built here forms reference cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class Entity(Protocol):
    """What the store needs from a user's or merchant's in-memory feature state."""

    late_events: int
    too_old_events: int

    def apply(self, ev: HeldEvent) -> None: ...

    def rebuild(
        self, events_by_series: Mapping[int, Sequence[tuple[int, int, Sequence[str]]]], end: int
    ) -> None: ...


E = TypeVar("E", bound=Entity)


@dataclass(slots=True)
class _Chunks:
    first: int = 0
    next: int = 0  # seq of the open chunk
    open_buf: bytearray = field(default_factory=bytearray)
    open_count: int = 0
    # newest event time per closed chunk, oldest chunk first, for expiry
    closed_max_ts: list[int] = field(default_factory=list)
    open_max_ts: int = -1
    open_flushed: bool = True


@dataclass(slots=True)
class Slot(Generic[E]):
    """An entity's in-memory state plus its persistence bookkeeping."""

    key: bytes
    partition: int
    entity: E
    seen: set[str]
    chunks: _Chunks
    dirty: bool = False
    meta_dirty: bool = False
    # The processor's last merchant-rule inputs and result for this entity (processor._merchant_alerts).
    memo: Any = None


class EntityStore(Generic[E]):
    """In-memory entities of one kind, persisted as chunks of held events in a KV."""

    def __init__(
        self,
        kind: bytes,
        kv: KV,
        factory: Callable[[], E],
        retention_ms: int,
        chunk_events: int = CHUNK_EVENTS,
        max_cached: int = MAX_CACHED,
        clock: PartitionClock | None = None,
    ) -> None:
        if max_cached < 1:
            raise ValueError("max_cached must be >= 1")
        self.kind = kind
        self.kv = kv
        self.factory = factory
        self.retention_ms = retention_ms
        self.chunk_events = chunk_events
        self.max_cached = max_cached
        self.clock = clock  # event-time clock of the background sweep (sweep.py)
        # In-memory entities, least recently used first.
        self.slots: OrderedDict[str, Slot[E]] = OrderedDict()
        self._dirty: list[Slot[E]] = []
        self.rebuilt = 0
        self.evicted = 0  # left memory for the budget (rebuilt on next touch)
        self.swept = 0  # removed from the table after being idle for the retention
        self.on_swept: Callable[[str], None] | None = None  # told the id of each entity swept
        self.late_events = 0
        self.too_old_events = 0

    # -- keys
    def _meta_key(self, entity_id: str) -> bytes:
        return self.kind + SEP + entity_id.encode()

    @staticmethod
    def _chunk_of(meta_key: bytes, seq: int) -> bytes:
        """A chunk's key from its entity's meta key (a slot's `key`): no id to encode or decode."""
        return meta_key + SEP + str(seq).encode()

    # -- access
    def slot(self, entity_id: str, partition: int) -> Slot[E]:
        """The entity's slot, loaded from the table if it is not in memory; now most recently used."""
        slots = self.slots
        s = slots.get(entity_id)
        if s is None:
            s = slots[entity_id] = self._load(entity_id, partition)
        else:
            slots.move_to_end(entity_id)
        return s

    def get(self, entity_id: str, owns: Callable[[int], bool] | None = None) -> E | None:
        """The entity if it is known here (loading it from the table if needed), else None.

        `owns(partition)` says whether this worker currently owns a partition: after a rebalance
        the table may still hold entities of partitions that moved to another worker. An entity
        of a partition not owned is neither loaded nor kept in memory.
        """
        s = self.slots.get(entity_id)
        if s is None:
            meta = self.kv.get(self._meta_key(entity_id))
            if meta is None:
                return None
            partition = orjson.loads(meta)["partition"]
            if owns is not None and not owns(partition):
                return None
            s = self.slots[entity_id] = self._load(entity_id, partition)
            self._evict()
        if owns is not None and not owns(s.partition):
            return None
        return s.entity

    def _load(self, entity_id: str, partition: int) -> Slot[E]:
        meta_key = self._meta_key(entity_id)
        meta_raw = self.kv.get(meta_key)
        ch = _Chunks()
        entity = self.factory()
        seen: set[str] = set()
        if meta_raw is not None:
            with _gc_paused():
                self._rebuild(meta_key, orjson.loads(meta_raw), ch, entity, seen)
            self.rebuilt += 1
        return Slot(meta_key, partition, entity, seen, ch, meta_dirty=meta_raw is None)

    def _rebuild(
        self, meta_key: bytes, meta: dict, ch: _Chunks, entity: E, seen: set[str]
    ) -> None:
        """Read the entity's chunks into `ch` and `seen`, then rebuild `entity` in bulk."""
        ch.first, ch.next = meta["first"], meta["next"]
        # Per series, (ts, value, cats) in arrival order: `rebuild` sorts each series stably
        # by ts, which reproduces the (ts, arrival) order of the incremental windows.
        by_series: dict[int, list[tuple[int, int, list[str]]]] = {}
        latest = -1
        for seq in range(ch.first, ch.next + 1):
            blob = self.kv.get(self._chunk_of(meta_key, seq))
            if blob is None:
                if seq < ch.next:
                    ch.closed_max_ts.append(-1)
                continue
            rows = chunk_rows(blob)
            max_ts = -1
            series_events = None
            series_code = None
            for row in rows:
                # After two crashes a chunk can repeat an event another chunk holds (one written
                # before the first crash, beyond the meta that survived it): it counts once.
                n = len(seen)
                seen.add(row[0])
                if len(seen) == n:
                    continue
                ts = row[2]
                if ts > max_ts:
                    max_ts = ts
                # Consecutive rows are mostly of one series: skip the dict lookup then.
                if row[1] != series_code:
                    series_code = row[1]
                    series_events = by_series.setdefault(series_code, [])
                series_events.append((ts, row[3], row[4:]))
            if max_ts > latest:
                latest = max_ts
            if seq < ch.next:
                ch.closed_max_ts.append(max_ts)
            else:
                ch.open_buf = bytearray(blob)
                ch.open_count = len(rows)
                ch.open_max_ts = max_ts
        if by_series:
            entity.rebuild(by_series, latest)

    def recent_event_ids(
        self, slot: Slot[E], since_ts: int, until_ts: int, limit: int, exclude: str = ""
    ) -> list[str]:
        """Ids of held events with `since_ts` <= ts <= `until_ts`, newest first, at most `limit`.

        For naming the events behind an alert (rare), so it reads the open chunk and, when that
        is not enough, the chunk before it from the table. Ties in ts keep arrival order
        reversed, so the answer depends only on what is held, not on when chunks were written.
        """
        ch = slot.chunks
        rows = chunk_rows(bytes(ch.open_buf))
        if len(rows) < limit and ch.next > ch.first:
            prev = self.kv.get(self._chunk_of(slot.key, ch.next - 1))
            if prev is not None:
                rows = chunk_rows(prev) + rows
        picked = [r for r in reversed(rows) if since_ts <= r[2] <= until_ts and r[0] != exclude]
        picked.sort(key=lambda r: r[2], reverse=True)
        return [r[0] for r in picked[:limit]]

    # -- writes
    def add(self, slot: Slot[E], ev: HeldEvent) -> bool:
        """Apply and persist a new event; False (and no effect) if its event id is already held."""
        if ev.event_id in slot.seen:
            return False
        slot.seen.add(ev.event_id)
        entity = slot.entity
        late, too_old = entity.late_events, entity.too_old_events
        entity.apply(ev)
        # Beyond the allowed lateness (applied on the slow path) and older than every window.
        self.late_events += entity.late_events - late
        self.too_old_events += entity.too_old_events - too_old
        ch = slot.chunks
        if ch.open_count >= self.chunk_events:
            if not ch.open_flushed:  # filled within this batch: write it before moving on
                self.kv.put(
                    slot.partition, self._chunk_of(slot.key, ch.next), bytes(ch.open_buf)
                )
            ch.closed_max_ts.append(ch.open_max_ts)
            ch.next += 1
            ch.open_buf = bytearray()
            ch.open_count = 0
            ch.open_max_ts = -1
            slot.meta_dirty = True
        ch.open_buf += ev.encode()
        ch.open_count += 1
        ch.open_flushed = False
        if ev.ts > ch.open_max_ts:
            ch.open_max_ts = ev.ts
        if not slot.dirty:
            slot.dirty = True
            self._dirty.append(slot)
        return True

    def expire(self, slot: Slot[E], end_ms: int) -> None:
        """Delete closed chunks whose newest event is older than the retention before `end_ms`."""
        ch = slot.chunks
        horizon = end_ms - self.retention_ms
        while ch.closed_max_ts and ch.closed_max_ts[0] <= horizon:
            ch.closed_max_ts.pop(0)
            key = self._chunk_of(slot.key, ch.first)
            blob = self.kv.get(key)
            if blob is not None:
                for ev in HeldEvent.decode_chunk(blob):
                    slot.seen.discard(ev.event_id)
                self.kv.delete(slot.partition, key)
            ch.first += 1
            slot.meta_dirty = True
        if slot.meta_dirty and not slot.dirty:
            slot.dirty = True
            self._dirty.append(slot)

    def flush(self) -> int:
        """Write each changed entity's open chunk (and meta) once; returns the records written."""
        n = 0
        for slot in self._dirty:
            ch = slot.chunks
            if not ch.open_flushed:
                ch.open_flushed = True
                self.kv.put(slot.partition, self._chunk_of(slot.key, ch.next), bytes(ch.open_buf))
                n += 1
            if slot.meta_dirty:
                meta = {"first": ch.first, "next": ch.next, "partition": slot.partition}
                self.kv.put(slot.partition, slot.key, packed(orjson.dumps(meta)))
                slot.meta_dirty = False
                n += 1
            slot.dirty = False
        self._dirty.clear()
        self._evict()
        return n

    def discard(self, entity_id: str) -> None:
        """Drop one entity from memory (flush first); it is rebuilt from the table on next use."""
        s = self.slots.pop(entity_id, None)
        if s is not None and s.dirty:
            self._dirty.remove(s)

    def _evict(self) -> None:
        """Drop least recently used entities beyond the budget; never one with unflushed changes."""
        slots = self.slots
        for _ in range(len(slots) - self.max_cached):
            entity_id, s = slots.popitem(last=False)
            if s.dirty:  # changed since the last flush: keep it (newest end) until flushed
                slots[entity_id] = s
                continue
            self.evicted += 1

    def sweep_key(self, key: bytes) -> None:
        """Remove the entity of meta key `key` from the table and memory once its newest event is the
        retention (plus the allowed lateness) behind its partition's clock (sweep.py)."""
        clock, retention = self.clock, self.retention_ms
        if clock is None or key.count(SEP) != 1:
            return
        entity_id = key[len(self.kind) + 1 :].decode()
        s = self.slots.get(entity_id)
        if s is not None and (s.dirty or not clock.may_expire(s.entity.latest, retention)):
            return  # in memory and recent (most are): no need to read its partition from the table

        def expired(partition: int, ts: int) -> bool:
            return clock.expired(partition, ts, retention)
        meta_raw = self.kv.get(key)
        if meta_raw is None:
            return
        meta = orjson.loads(meta_raw)
        partition, first, nxt = meta["partition"], meta["first"], meta["next"]
        if s is not None:
            if not expired(partition, s.entity.latest):
                return
        else:
            # The newest events are almost always in the open chunk: decide from it when it is recent.
            blobs = {nxt: self.kv.get(self._chunk_of(key, nxt))}
            if not expired(partition, newest_ts(blobs[nxt])):
                return
            for seq in range(first, nxt):
                blobs[seq] = self.kv.get(self._chunk_of(key, seq))
            if not expired(partition, max(newest_ts(b) for b in blobs.values())):
                return
        for seq in range(first, nxt + 1):
            chunk_key = self._chunk_of(key, seq)
            if self.kv.get(chunk_key) is not None:
                self.kv.delete(partition, chunk_key)
        self.kv.delete(partition, key)
        self.slots.pop(entity_id, None)
        self.swept += 1
        if self.on_swept is not None:
            self.on_swept(entity_id)

    def forget(self) -> None:
        """Drop in-memory entities (after a rebalance); they are rebuilt from the table on next use."""
        self.slots.clear()
        self._dirty.clear()
