"""The analysts' review queue: a case per payment decided `review`, in the state table.

A case is one record `rv␟{user_id}␟{payment_id}` in the same changelog-backed KV as the user's other
state, on the user's partition: orjson of `{user_id, payment_id, merchant_id, ts, amount (minor units),
score, reasons, rules_version, status, audit}`. `status` is `pending` until an analyst resolves it, then
the latest resolution (`approve` or `fraud`); `audit` lists every resolution applied, oldest first:
`{control_id, analyst, resolution, note, action, limit, resolved_at}`. So the queue survives restarts
and rebalances like the rest of the state (the changelog), and is rolled back with it under
exactly-once (the KV's undo log).

The queue is the pending cases of the partitions a worker owns. A worker keeps an index of them in
memory, (user, payment) -> payment time, for `GET /reviews` (oldest first); it is dropped whenever the
processor forgets its state (a rebalance, an aborted transaction) and rebuilt from the table when
`GET /reviews` next asks, one walk over the table's keys (never in the batch loop: opening and resolving
cases only keep an index that exists up to date).

Every change happens once: a case is opened once per payment (a payment read again after a crash
finds it and leaves it, resolved or not), and a resolution is applied once per control event id (its
id in the audit trail). The audit trail holds at most `AUDIT_MAX` entries; a resolution beyond that is
refused (dead-lettered by the processor), so a case never forgets an id it applied.

The background sweep (sweep.py) removes a case, pending or resolved, once its payment is `keep_ms`
(the payment index's matching horizon, STREAMRISK_PAYMENT_INDEX_DAYS) plus the allowed lateness
behind its partition's event-time clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from . import keys
from .kv import KV, SEP, packed
from .sweep import PartitionClock

KIND = keys.REVIEW
PENDING = "pending"
AUDIT_MAX = 100


def case_key(user_id: str, payment_id: str) -> bytes:
    return KIND + SEP + user_id.encode() + SEP + payment_id.encode()


class ReviewCases:
    """Open, resolve, list and expire review cases (module docstring)."""

    def __init__(
        self,
        kv: KV,
        keep_ms: int,
        clock: PartitionClock,
        partition_of: Callable[[str], int],
        table: Callable[[], Iterable[bytes]] | None = None,
    ) -> None:
        self.kv = kv
        self.keep_ms = keep_ms
        self.clock = clock
        self.partition_of = partition_of
        self._table = table  # the whole table's keys, to rebuild the index (None: nothing to rebuild)
        # (user_id, payment_id) -> payment ts of every pending case; None until rebuilt.
        self._pending: dict[tuple[str, str], int] | None = None
        self.opened = 0
        self.resolutions = 0
        self.swept = 0

    def get(self, user_id: str, payment_id: str) -> dict[str, Any] | None:
        raw = self.kv.get(case_key(user_id, payment_id))
        return None if raw is None else orjson.loads(raw)

    def _put(self, partition: int, case: dict[str, Any]) -> None:
        self.kv.put(partition, case_key(case["user_id"], case["payment_id"]), packed(orjson.dumps(case)))

    def open(self, partition: int, case: dict[str, Any]) -> bool:
        """Open a pending case (`case` without status and audit); False if the payment has one."""
        user_id, payment_id = case["user_id"], case["payment_id"]
        if self.kv.get(case_key(user_id, payment_id)) is not None:
            return False
        case = {**case, "status": PENDING, "audit": []}
        self._put(partition, case)
        self.opened += 1
        if self._pending is not None:  # else the rebuild finds it in the table
            self._pending[(user_id, payment_id)] = case["ts"]
        return True

    def resolve(self, partition: int, case: dict[str, Any], entry: dict[str, Any]) -> bool:
        """Apply a resolution (`entry`, with its `control_id` and `resolution`) to `case`; False when
        that control event was applied already. ValueError when the audit trail is full."""
        audit = case["audit"]
        if any(e["control_id"] == entry["control_id"] for e in audit):
            return False
        if len(audit) >= AUDIT_MAX:
            raise ValueError(f"the case's audit trail holds {AUDIT_MAX} resolutions already, the most kept")
        audit.append(entry)
        case["status"] = entry["resolution"]
        self._put(partition, case)
        self.resolutions += 1
        if self._pending is not None:
            self._pending.pop((case["user_id"], case["payment_id"]), None)
        return True

    def pending(
        self, limit: int, partitions: Iterable[int] | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """The oldest `limit` pending cases (of `partitions`, if given), oldest payment first, and how
        many are pending in all (of those partitions)."""
        pending = self._index()
        wanted = None if partitions is None else set(partitions)
        ids = [(ts, user, payment) for (user, payment), ts in pending.items()
               if wanted is None or self.partition_of(user) in wanted]
        ids.sort()
        out = []
        for _, user, payment in ids[:limit]:
            case = self.get(user, payment)
            if case is not None and case["status"] == PENDING:
                out.append(case)
        return out, len(ids)

    def forget(self) -> None:
        """The table may change under us (a rebalance, a roll back): rebuild the index on next use."""
        self._pending = None

    def _index(self) -> dict[tuple[str, str], int]:
        pending = self._pending
        if pending is None:
            pending = self._pending = {}
            if self._table is not None:
                prefix = KIND + SEP
                table = self._table()
                walk = getattr(table, "walk", None)  # a table on disk: its keys with the prefix, lazily
                for key in walk(prefix) if walk is not None else list(table):
                    if key.startswith(prefix):
                        case = self.kv.get(key)
                        if case is not None:
                            c = orjson.loads(case)
                            if c["status"] == PENDING:
                                pending[(c["user_id"], c["payment_id"])] = c["ts"]
        return pending

    def sweep_key(self, key: bytes) -> None:
        """The sweep's handler: remove the case once its payment is past the horizon (module docstring)."""
        raw = self.kv.get(key)
        if raw is None:
            return
        case = orjson.loads(raw)
        ts = case["ts"]
        if not self.clock.may_expire(ts, self.keep_ms):
            return
        partition = self.partition_of(case["user_id"])
        if self.clock.expired(partition, ts, self.keep_ms):
            self.kv.delete(partition, key)
            self.swept += 1
            if self._pending is not None:
                self._pending.pop((case["user_id"], case["payment_id"]), None)
