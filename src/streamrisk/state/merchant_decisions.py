"""Each merchant's last decisions, kept by the worker that owns the merchant's partition.

A payment is decided on its user's partition; the merchant event forwarded to the merchant's owner
carries the decision (MerchantSide.forward), and lands here. Per merchant the table holds one
record, `b"d\\x1f" + merchant_id` -> at most `keep` of those forwarded records as they came, one per
line (as state chunks are), oldest payment first, each a `Forwarded` (core/records.py) as its `row`:

    ["p" + payment event_id, series, ts, amount (minor units), merchant_id,
     user_id, action, score, rules_version, *reasons]

Kept as the bytes that arrived, a list is written with one join, never encoded again. A row is keyed
by the payment's event id, so a forwarded event read again (a crash, a producer's retry, a payment
re-forwarded after a crash) adds nothing while its row is kept, and is not kept again once newer
payments pushed it out (older than every row of a full list). Each changed record is written once per
batch (`flush`), so a busy merchant costs one changelog record per batch, not one per payment. Lists
read or changed lately stay in memory: at most `max_cached` merchants after a flush (past that, only
those the batch changed stay). The background sweep deletes a record once its newest payment is the
merchant retention (plus the allowed lateness) behind the partition's clock, as the merchant's own
state is (sweep.py).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from ..core.records import Forwarded
from . import keys
from .chunks import chunk_rows
from .kv import KV, SEP
from .sweep import PartitionClock

KIND = keys.MERCHANT_DECISIONS


@dataclass(slots=True)
class _Kept:
    """One merchant's kept records, oldest payment first, in three parallel lists."""

    ids: list[str] = field(default_factory=list)  # forwarded event ids
    times: list[int] = field(default_factory=list)  # payment times
    raws: list[bytes] = field(default_factory=list)  # the forwarded records' bytes


class MerchantDecisions:
    """The last `keep` decisions per merchant, newest payment time last, persisted in the KV."""

    def __init__(
        self,
        kv: KV,
        keep: int,
        retention_ms: int,
        max_cached: int,
        clock: PartitionClock | None = None,
        partition_of: Callable[[str], int] | None = None,
    ) -> None:
        self.kv = kv
        self.keep = keep
        self.retention_ms = retention_ms
        self.max_cached = max_cached
        self.clock = clock
        self.partition_of = partition_of
        self._kept: dict[str, _Kept] = {}  # equal to the table after flush
        self._changed: dict[str, int] = {}  # merchant id -> partition, written at flush
        self.swept = 0

    @staticmethod
    def _key(merchant_id: str) -> bytes:
        return KIND + SEP + merchant_id.encode()

    def _read(self, merchant_id: str) -> _Kept:
        blob = self.kv.get(self._key(merchant_id))
        if not blob:
            return _Kept()
        kept = [Forwarded.of(row) for row in chunk_rows(blob)]
        return _Kept([f.event_id for f in kept], [f.ts for f in kept], blob.split(b"\n"))

    def add(self, partition: int, merchant_id: str, eid: str, ts: int, raw: bytes) -> None:
        """Keep a forwarded payment's decision: `eid` and `ts` are the forwarded event's id and time,
        `raw` its bytes."""
        if not self.keep:
            return
        kept = self._kept.get(merchant_id)
        if kept is None:
            kept = self._kept[merchant_id] = self._read(merchant_id)
        ids, times, raws = kept.ids, kept.times, kept.raws
        if times and ts <= times[-1]:  # not the newest: maybe kept already, maybe late
            if eid in ids:
                return
            if len(times) >= self.keep and ts < times[0]:
                return  # older than every record of a full list
            i = bisect_right(times, ts)  # after records of equal time
            ids.insert(i, eid)
            times.insert(i, ts)
            raws.insert(i, raw)
        else:
            ids.append(eid)
            times.append(ts)
            raws.append(raw)
        if len(times) > self.keep:
            del ids[0], times[0], raws[0]
        self._changed[merchant_id] = partition

    def recent(self, merchant_id: str) -> list[Forwarded]:
        """The merchant's kept records, decoded, newest payment first."""
        kept = self._kept.get(merchant_id)
        blob = self.kv.get(self._key(merchant_id)) if kept is None else b"\n".join(kept.raws)
        return [Forwarded.of(row) for row in reversed(chunk_rows(blob))] if blob else []

    def flush(self) -> int:
        """Write each list the batch changed, once; returns the records written."""
        kept, kv, changed = self._kept, self.kv, self._changed
        for merchant_id, partition in changed.items():
            kv.put(partition, self._key(merchant_id), b"\n".join(kept[merchant_id].raws))
        if len(kept) > self.max_cached:  # over budget: keep only the merchants this batch changed
            self._kept = {merchant_id: kept[merchant_id] for merchant_id in changed}
        n = len(changed)
        changed.clear()
        return n

    def forget(self) -> None:
        """Drop the lists from memory (after a rebalance); they are read from the table on next use."""
        self._kept.clear()
        self._changed.clear()

    def sweep_key(self, key: bytes) -> None:
        """Delete the record under `key` once its newest payment has expired (module docstring)."""
        if self.clock is None or self.partition_of is None:
            return
        merchant_id = key[len(KIND) + 1 :].decode()
        if merchant_id in self._changed:
            return
        kept = self._kept.get(merchant_id)
        if kept is not None:  # in memory: equal to the table
            if not kept.times:
                return
            newest = kept.times[-1]
        else:
            blob = self.kv.get(key)
            if not blob:
                return
            newest = Forwarded.of(orjson.loads(blob[blob.rfind(b"\n") + 1 :])).ts
        if not self.clock.may_expire(newest, self.retention_ms):
            return
        partition = self.partition_of(merchant_id)
        if self.clock.expired(partition, newest, self.retention_ms):
            self.kv.delete(partition, key)
            self._kept.pop(merchant_id, None)
            self.swept += 1
