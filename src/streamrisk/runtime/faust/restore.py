"""Changelog recovery in bulk: a fetch's changelog records applied to the state table in one pass.

Faust recovers a table one record at a time: each record becomes an event, goes through a queue to the
recovery loop (a task per get), is logged at debug level (formatted even when not logged) and checked
against every partition's end. That is about 0.5 ms a record on this machine, so a worker taking over
partitions late in a run spent 15-30 s recovering 20,000-40,000 changelog records before it decided
anything (scripts/chaos.py). Here the records of an active partition in recovery are written to the
table's memory store directly, as its `apply_changelog_batch` would, and the recovery's offset moves
past them. The last record then takes Faust's own path: the recovery loop finds it already applied and
checks whether recovery is done, so Faust alone decides when it ends.

With the RocksDB store (rocks.py) a fetch's records go to the partition's database in one write with
the offset they reach, for an active partition in recovery and for a standby replica's partition alike
(Faust's per-record path would leave a standby ever further behind a busy changelog).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from faust.stores.memory import Store as MemoryStore
from faust.types import TP

from .rocks import StateStore


def apply_in_bulk(app: Any, tp: TP, records: Sequence[Any]) -> bool:
    """Apply `records` (aiokafka records of changelog partition `tp`, in offset order) to their table if
    `tp` is an active partition in recovery and nothing for recovery is queued before them. Returns
    False, having done nothing, otherwise: the caller then takes Faust's per-record path."""
    recovery = app.tables.recovery
    table = recovery.tp_to_table.get(tp)
    if (
        not records
        or table is None
        or table._on_changelog_event is not None
        or not app.tables.changelog_queue.empty()  # queued records must be applied first
    ):
        return False
    store = table.data
    if isinstance(store, StateStore):
        if recovery.in_recovery and tp in recovery.active_tps:
            offsets = recovery.active_offsets
        elif tp in recovery.standby_tps:
            offsets = recovery.standby_offsets
        else:
            return False
        recovery.flush_buffers()
        last = store.restore_records(tp.partition, records, offsets.get(tp))
        if last is not None:
            offsets[tp] = last
        return True
    if not recovery.in_recovery or tp not in recovery.active_tps or not isinstance(store, MemoryStore):
        return False
    recovery.flush_buffers()  # what the recovery loop has taken but not yet applied goes first
    seen = recovery.active_offsets.get(tp)
    data, key_partition, partition = store.data, store._key_partition, tp.partition
    last = None
    for record in records:
        if seen is not None and record.offset <= seen:
            continue
        key = record.key
        if record.value is None:  # a tombstone
            data.pop(key, None)
            key_partition.pop(key, None)
        else:
            data[key] = record.value
            key_partition[key] = partition
        last = record.offset
    if last is not None:
        recovery.active_offsets[tp] = last
    return True
