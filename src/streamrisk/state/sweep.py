"""Background expiry of state nobody touches any more: idle entities, payment indexes, held early
chargebacks and alert-dedupe entries, a bounded number of table keys per batch.

Expiry runs on **event time**, per partition: the newest event time this worker has processed on
the partition since its last rebalance (`PartitionClock`). Everything that expires is defined in event
time already (windows, retention, index days, dedupe window), so a replay or a backtest over months of
history expires exactly what a live run would, and a partition with no traffic keeps its state until
its traffic resumes (wall time would wipe a replay's state or keep a backlog's). Work is driven by the
batches: each batch examines a number of keys proportional to its size (`Sweeper.step`).

A record is removed only once its time is more than `keep + grace` behind the clock, where `grace` is
the allowed lateness. An event within the allowed lateness therefore sees exactly what it would have
seen had the record been kept (it would have expired it itself), so outputs do not depend on how far
the sweep has got; see `PartitionClock.expired`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from itertools import islice
from typing import Any

from .keys import id_partition
from .kv import SEP

# Keys examined per event of the batch: one, plus twice the rate at which keys were added to the table
# during the previous walk, so a walk always outruns the table's growth (a new user adds about three
# keys) while a table of known users costs one key per event. The first walk, with no rate measured
# yet, examines FIRST_WALK_KEYS_PER_EVENT.
FIRST_WALK_KEYS_PER_EVENT = 4
MIN_KEYS_PER_BATCH = 64


def key_partition(entity_id: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives an entity id's key (CONTRACT.md)."""
    return id_partition(entity_id, partitions)


class PartitionClock:
    """Newest event time processed per partition since the last rebalance: what expiry runs on."""

    def __init__(self, grace_ms: int) -> None:
        self.grace_ms = grace_ms
        self.ts: dict[int, int] = {}
        self.newest = -1  # over all partitions

    def advance(self, partition: int, ts: int) -> None:
        if ts > self.ts.get(partition, -1):
            self.ts[partition] = ts
            if ts > self.newest:
                self.newest = ts

    def may_expire(self, ts: int, keep_ms: int) -> bool:
        """Whether `expired` can hold on any partition: a cheap test before finding the partition."""
        return ts + keep_ms + self.grace_ms < self.newest

    def expired(self, partition: int, ts: int, keep_ms: int) -> bool:
        """Whether a record of `partition` last valid at `ts` may go: more than `keep_ms` plus the
        grace behind the partition's clock. False for a partition with no clock (not ours, or no
        event since the last rebalance)."""
        now = self.ts.get(partition)
        return now is not None and ts + keep_ms + self.grace_ms < now

    def reset(self) -> None:
        self.ts.clear()
        self.newest = -1


class Sweeper:
    """Walks the table's keys a slice per batch, handing each to the expiry of its kind.

    `handlers` maps a key's kind (the bytes before its first separator: the registry in keys.py) to
    a function that removes what has expired under that key. A walk works on a snapshot of the key list (one
    pointer per key), so the table can change under it; a new walk starts when one ends. A table on disk
    (one with a `walk()` of its keys: runtime/faust/rocks.py) is walked lazily instead, never listed whole,
    and its growth is measured by its (estimated) size.
    """

    def __init__(
        self,
        table: Callable[[], Mapping[bytes, Any]] | None,
        handlers: dict[bytes, Callable[[bytes], None]],
    ) -> None:
        self._table = table
        self.handlers = handlers
        self.walks = 0  # completed walks over the table, for benchmarks and tests
        self.restart()

    def step(self, events: int) -> int:
        """Examine the keys due for a batch of `events` events; returns how many were examined."""
        if self._table is None:
            return 0
        if self._lazy is None and self._pos >= len(self._keys):
            self._new_walk(self._table())
        self._walk_events += events
        budget = max(MIN_KEYS_PER_BATCH, int(self.keys_per_event * events))
        if self._lazy is not None:
            keys = list(islice(self._lazy, budget))
            if len(keys) < budget:  # this walk is over: the next step starts another
                self._end_lazy_walk()
        else:
            keys = self._keys[self._pos : self._pos + budget]
            self._pos += len(keys)
        handlers = self.handlers
        for key in keys:
            end = key.find(SEP)  # keys.kind_of, inlined: once per key walked
            handler = handlers.get(key[:end]) if end > 0 else None
            if handler is not None:
                handler(key)
        return len(keys)

    def _new_walk(self, table: Mapping[bytes, Any]) -> None:
        walk = getattr(table, "walk", None)
        if walk is not None:
            self._lazy, self._lazy_table, self._walk_events = walk(), table, 0
            self._lazy_size = len(table)
            return
        walked = self._keys
        if walked:
            self.walks += 1
            # Added while the last walk ran: the keys now, less those of its snapshot still there.
            # One membership test per key walked: far less than the walk's own handling of each.
            added = len(table) - sum(1 for key in walked if key in table)
            self.keys_per_event = 1.0 + 2.0 * added / max(self._walk_events, 1)
        self._keys, self._pos, self._walk_events = list(table), 0, 0

    def _end_lazy_walk(self) -> None:
        self.walks += 1
        added = max(0, len(self._lazy_table) - self._lazy_size)  # net growth: all a lazy walk can see
        self.keys_per_event = 1.0 + 2.0 * added / max(self._walk_events, 1)
        self._lazy = None
        self._new_walk(self._table())  # type: ignore[misc]

    def restart(self) -> None:
        """Drop the current walk and its rate (after a rebalance the table's keys change wholesale)."""
        self._lazy: Iterator[bytes] | None = None
        self._lazy_table: Any = None
        self._lazy_size = 0
        self._keys: list[bytes] = []
        self._pos = 0
        self._walk_events = 0  # events since the current walk began
        self.keys_per_event = float(FIRST_WALK_KEYS_PER_EVENT)


def memory_stats(users: Any, merchants: Any, index: Any, early: Any, gate: Any) -> dict[str, int]:
    """What is in memory and what left it, for /stats."""
    return {
        "users_in_memory": len(users.slots),
        "merchants_in_memory": len(merchants.slots),
        "entities_evicted": users.evicted + merchants.evicted,
        "idle_entities_swept": users.swept + merchants.swept,
        "idle_payment_indexes_swept": index.swept_users,
        "early_chargebacks_swept": early.swept,
        "alert_dedupe_entries_swept": gate.swept,
    }
