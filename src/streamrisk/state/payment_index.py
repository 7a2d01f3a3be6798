"""Per-user index of recent payments, so a late chargeback finds its payment by event id.

A chargeback arrives days (up to `retention_ms`, 180 days by default) after its payment. Both are keyed
by `user_id`, so the index lives per user on the same partition, in the same KV (a Faust table with a
changelog) as the entity state, and is persisted in the `EntityStore` style:

- Each user's payments are appended to numbered chunks. A chunk closes when the next payment would
  give it more than `chunk_lines` lines or make it span more than `chunk_span_ms` of event time.
- A line is the orjson array `[payment_id, merchant_id, ts, amount, outcome]` and a newline, where
  `outcome` is the input offset the payment was decided at and what it was decided,
  `[offset, action, score, rules_version, *reasons]` (so a payment read again after a crash gets the
  same decision), `[offset]` for an entry indexed with an offset only (the credit book's orders), or
  null; a fraud mark appends the chargeback's event id and input offset (null when unknown):
  `[payment_id, merchant_id, ts, amount, outcome, chargeback_id, chargeback_offset]`. In memory an
  entry is an `IndexedPayment`, its decision an `Outcome` (core/records.py).
- Keys: `b"x\\x1f" + user_id` (meta) and `b"x\\x1f" + user_id + b"\\x1f" + str(seq)` (chunks). User ids
  must not contain `\\x1f` (as for every key of the table).
- Meta is orjson of `{"first": seq of the oldest live chunk, "next": seq of the open chunk,
  "head": newest ts in chunk `first` (-1 when first == next), "top": newest ts over all closed chunks}`.
  Its size is constant (no per-chunk list), so rewriting it on a chunk roll costs the same for a user
  with one chunk as for one with thousands. A user whose index never rolled a chunk has no meta at
  all: a missing meta means `{"first": 0, "next": 0, "head": -1, "top": -1}`.
- Only the open chunk is rewritten, once per batch per user, on `flush()` (a chunk that fills up within
  a batch is written as it closes); meta only changes when a chunk closes or expires. So the changelog
  bytes per payment are bounded by the chunk size and never grow with the payments indexed.
- A closed chunk expires (one tombstone) once its newest payment is `retention_ms` or more older than
  the user's newest payment, oldest chunk first. So a payment is found while it is less than
  `retention_ms` older than its user's newest payment, and is gone (if payments arrived in order) by
  the time that one is `retention_ms + chunk_span_ms` newer. Without the span bound, a user who pays
  twice a month would keep years of payments in one 64-line chunk, and rewrite all of them every batch.
- In memory there is only what the current batch added to (the open chunk of each such user); the KV
  holds everything else, and `flush()` clears it, so memory is bounded by the batch (plus a few
  numbers per user describing the open chunk it wrote last, so the next batch does not decode it
  to count its lines). Expiry runs on
  `add`, and the background sweep (sweep.py) removes the whole index of a user whose newest payment
  is `retention_ms` (plus the allowed lateness) behind the partition's event-time clock.
- A chargeback finds a payment only if it is less than `match_ms` (at most `retention_ms`) after it,
  so whether the sweep has reached an idle user's index yet does not change what a chargeback finds.
  The index may keep payments longer than it matches them: it is also the dedupe authority for
  payments (a payment sent again is recognised while it is indexed; README, "Guarantees").

A lookup reads chunks newest first and only decodes the lines that contain the id's JSON prefix, so a
miss costs one KV read and one substring search per live chunk of the user.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson

from ..core.records import Outcome
from ..settings import DAY_MS
from . import keys
from .chunks import chunk_rows
from .kv import KV, SEP, packed
from .sweep import PartitionClock

KIND = keys.PAYMENT_INDEX
CHUNK_LINES = 64
RETENTION_MS = 180 * DAY_MS
CHUNK_SPAN_MS = 30 * DAY_MS
# Users whose open chunk's line count and times are remembered between batches (see `_shapes`).
SHAPES_MAX = 100_000


@dataclass(frozen=True, slots=True)
class IndexedPayment:
    """A payment as the index holds it; `chargeback_id` is set once a chargeback marked it as fraud."""

    payment_id: str
    merchant_id: str
    ts: int
    amount: int  # minor units
    chargeback_id: str | None
    outcome: Outcome | None = None  # its decision, when it was decided
    chargeback_offset: int | None = None  # input offset of the chargeback that marked it, if known
    offset: int | None = None  # the input offset it was indexed (decided) at, if known


@dataclass(slots=True)
class _Open:
    """A user the current batch added to: its chunk bookkeeping and its open chunk, until `flush()`."""

    partition: int
    first: int
    next: int
    head: int  # newest ts in chunk `first` (when first < next)
    top: int  # newest ts over the closed chunks
    # The open chunk: the table's bytes until the batch adds a line (then a copy with it, written by
    # flush() as it is), a bytearray once a second line or a fraud mark changes it in the same batch.
    buf: bytes | bytearray = b""
    count: int = 0  # lines in the open chunk
    open_max: int = -1  # newest ts in the open chunk
    open_min: int = -1  # oldest ts in the open chunk
    dirty: bool = False  # open chunk changed since it was read or written
    meta_dirty: bool = False


@dataclass(slots=True)
class _Hit:
    seq: int
    blob: bytes | bytearray
    start: int  # the line is blob[start:end], without its newline
    end: int
    row: list


def _record(row: list) -> IndexedPayment:
    n = len(row)
    stored = row[4]  # [offset, action, score, rules_version, *reasons], [offset] or null
    offset = outcome = None
    if stored:
        offset = stored[0]
        if len(stored) > 3:
            outcome = Outcome(stored[1], stored[2], stored[3], stored[4:])
    return IndexedPayment(row[0], row[1], row[2], row[3], row[5] if n > 5 else None, outcome,
                          row[6] if n > 6 else None, offset)


def _stored(offset: int | None, outcome: Outcome | None) -> list | None:
    """The line's outcome item (module docstring)."""
    if outcome is not None:
        return [offset, outcome.action, outcome.score, outcome.rules_version, *outcome.reasons]
    return None if offset is None else [offset]


def _max_ts(blob: bytes | bytearray | None) -> int:
    rows = chunk_rows(bytes(blob)) if blob else []
    return max((r[2] for r in rows), default=-1)


def _scan(blob: bytes | bytearray, needle: bytes, payment_id: str) -> _Hit | None:
    """The first line of `blob` whose payment id is `payment_id`.

    `needle` is `[` + the id's JSON string + `,`, the exact prefix of such a line. A match elsewhere in a
    line (inside a merchant id, say) is ruled out by decoding the line; a raw newline only ends lines.
    """
    i = blob.find(needle)
    while i != -1:
        start = blob.rfind(b"\n", 0, i) + 1
        end = blob.find(b"\n", i)
        if end == -1:
            end = len(blob)
        row = orjson.loads(blob[start:end])
        if row[0] == payment_id:
            return _Hit(-1, blob, start, end, row)
        i = blob.find(needle, end)
    return None


class PaymentIndex:
    """Recent payments of each user in bounded chunks of a KV, found by payment event id."""

    def __init__(
        self,
        kv: KV,
        retention_ms: int = RETENTION_MS,
        chunk_lines: int = CHUNK_LINES,
        chunk_span_ms: int = CHUNK_SPAN_MS,
        clock: PartitionClock | None = None,
        partition_of: Callable[[str], int] | None = None,
        match_ms: int | None = None,
    ) -> None:
        if retention_ms <= 0 or chunk_lines <= 0 or chunk_span_ms < 0:
            raise ValueError("retention_ms and chunk_lines must be positive, chunk_span_ms not negative")
        if match_ms is not None and not 0 < match_ms <= retention_ms:
            raise ValueError("match_ms must be positive and at most retention_ms")
        self.kv = kv
        # How long after a payment a chargeback still finds it (the retention when not given).
        self.match_ms = retention_ms if match_ms is None else match_ms
        # Event-time clock and key -> partition for expiring idle users (sweep.py).
        self.clock = clock
        self.partition_of = partition_of
        self.retention_ms = retention_ms
        self.chunk_lines = chunk_lines
        self.chunk_span_ms = chunk_span_ms
        self._open: dict[str, _Open] = {}
        # User -> (seq, byte length, lines, oldest ts, newest ts) of the open chunk this index last
        # wrote, so the next batch that adds to it need not decode all its lines (up to
        # `chunk_lines`) again. Only used while the table holds a chunk of that seq and length: every
        # write of the open chunk outside `flush` drops the entry, and a chunk only ever grows. Then
        # the user's meta as flushed with it (first, head, top; its next is the seq), so neither the
        # next batch that adds to the user nor the sweep reads and decodes the meta: only `flush`
        # writes a meta, and the sweep, the only other writer of a user's index keys, drops the
        # entry. A few dozen bytes a user, dropped whole at SHAPES_MAX.
        self._shapes: dict[str, tuple[int, int, int, int, int, int, int, int]] = {}
        # counters, for /stats and benchmarks
        self.indexed = 0  # add() calls
        self.marked = 0  # payments newly marked as fraud
        self.expired_chunks = 0  # chunks deleted (tombstoned)
        self.swept_users = 0  # whole indexes of idle users removed by the sweep

    @property
    def pending_users(self) -> int:
        """Users held in memory: those the current batch added to (0 right after `flush()`)."""
        return len(self._open)

    # -- keys
    @staticmethod
    def _meta_key(user_id: str) -> bytes:
        return KIND + SEP + user_id.encode()

    @staticmethod
    def _chunk_key(user_id: str, seq: int) -> bytes:
        return KIND + SEP + user_id.encode() + SEP + str(seq).encode()

    def _meta(self, user_id: str) -> tuple[int, int, int, int]:
        known = self._shapes.get(user_id)
        if known is not None:  # as flushed (see `_shapes`)
            return known[5], known[0], known[6], known[7]
        raw = self.kv.get(self._meta_key(user_id))
        if raw is None:
            return 0, 0, -1, -1
        m = orjson.loads(raw)
        return m["first"], m["next"], m["head"], m["top"]

    def _load(self, partition: int, user_id: str) -> _Open:
        first, nxt, head, top = self._meta(user_id)
        u = _Open(partition, first, nxt, head, top)
        blob = self.kv.get(self._chunk_key(user_id, nxt))
        if blob:
            u.buf = blob if type(blob) is bytes else bytearray(blob)  # immutable: shared, not copied
            shape = self._shape(user_id, nxt, blob)
            if shape is not None:
                u.count, u.open_min, u.open_max = shape
            else:
                rows = chunk_rows(blob)
                u.count = len(rows)
                u.open_max = max(r[2] for r in rows)
                u.open_min = min(r[2] for r in rows)
        return u

    # -- writes
    def add(
        self,
        partition: int,
        user_id: str,
        payment_id: str,
        merchant_id: str,
        ts: int,
        amount: int,
        offset: int | None = None,
        outcome: Outcome | None = None,
    ) -> None:
        """Append a payment to the user's open chunk, then expire the user's chunks past the retention.
        `offset` is its input offset, `outcome` its decision (kept to answer it again when it is read
        again at that offset).

        The caller adds each payment id once; adding one again only makes `find` return one of the two.
        """
        u = self._open.get(user_id)
        if u is None:
            u = self._open[user_id] = self._load(partition, user_id)
        newest = max(u.top, u.open_max, ts)
        horizon = newest - self.retention_ms
        if u.count and (
            u.count >= self.chunk_lines or max(u.open_max, ts) - min(u.open_min, ts) > self.chunk_span_ms
        ):
            self._roll(u, user_id)
        line = orjson.dumps([payment_id, merchant_id, ts, amount, _stored(offset, outcome)],
                            option=orjson.OPT_APPEND_NEWLINE)
        buf = u.buf
        if u.dirty:  # a later line of this batch: append in place
            if type(buf) is bytes:
                buf = u.buf = bytearray(buf)
            buf += line
        else:  # most users add one payment a batch: one copy of the chunk, flushed without another
            u.buf = buf + line
        if u.count == 0:
            u.open_min = u.open_max = ts
        elif ts > u.open_max:
            u.open_max = ts
        elif ts < u.open_min:
            u.open_min = ts
        u.count += 1
        u.dirty = True
        self.indexed += 1
        while u.first < u.next and u.head <= horizon:
            self.kv.delete(u.partition, self._chunk_key(user_id, u.first))
            self.expired_chunks += 1
            u.first += 1
            u.meta_dirty = True
            # the next chunk's newest ts: one read per expired chunk
            u.head = _max_ts(self.kv.get(self._chunk_key(user_id, u.first))) if u.first < u.next else -1

    def _roll(self, u: _Open, user_id: str) -> None:
        """Close the open chunk (writing it if this batch changed it) and open the next one."""
        if u.dirty:
            self.kv.put(u.partition, self._chunk_key(user_id, u.next), bytes(u.buf))
        if u.first == u.next:
            u.head = u.open_max
        u.top = max(u.top, u.open_max)
        u.next += 1
        u.buf = b""
        u.count = 0
        u.open_max = u.open_min = -1
        u.dirty = False
        u.meta_dirty = True

    def mark_fraud(
        self, partition: int, user_id: str, payment_id: str, chargeback_id: str, ts: int | None = None,
        offset: int | None = None,
    ) -> IndexedPayment | None:
        """Mark a payment as charged back (fraud), in whichever chunk holds it; None if it is not indexed
        (or, given the chargeback's time `ts`, the payment is `match_ms` or more older than it).

        A payment already marked keeps its first chargeback id. A mark in the open chunk of a user this
        batch added to is written by `flush()`; any other mark rewrites its chunk at once. `offset` is
        the chargeback's input offset, kept to tell it read again (same offset) from sent again.
        """
        hit = self._locate(user_id, payment_id)
        if hit is None or (ts is not None and ts - hit.row[2] >= self.match_ms):
            return None
        if len(hit.row) > 5:
            return _record(hit.row)
        hit.row.append(chargeback_id)
        hit.row.append(offset)
        line = orjson.dumps(hit.row)
        u = self._open.get(user_id)
        if u is not None and hit.seq == u.next:
            if type(u.buf) is bytes:
                u.buf = bytearray(u.buf)
            u.buf[hit.start : hit.end] = line  # type: ignore[index]
            u.dirty = True
        else:
            blob = bytes(hit.blob)
            p = u.partition if u is not None else partition
            self.kv.put(p, self._chunk_key(user_id, hit.seq), blob[: hit.start] + line + blob[hit.end :])
            self._shapes.pop(user_id, None)
        self.marked += 1
        return _record(hit.row)

    def _expired(self, partition: int, ts: int) -> bool:
        return self.clock is not None and self.clock.expired(partition, ts, self.retention_ms)

    # -- background expiry (sweep.py)
    def sweep_key(self, key: bytes) -> None:
        """Remove, under this index key, what has been idle past the retention."""
        if self.clock is None or self.partition_of is None:
            return
        parts = key.split(SEP)
        if key[:1] != KIND or len(parts) not in (2, 3):
            return  # not a key of ours (ids never hold the separator)
        user_id = parts[1].decode()
        clock, keep = self.clock, self.retention_ms
        if user_id in self._open:
            return
        first, nxt, _, top = self._meta(user_id)
        if top >= 0 and not clock.may_expire(top, keep):
            return  # its newest event is at least `top`: recent, as for every active user
        # Decide at the open chunk's key (or at the meta key when the open chunk is not written yet).
        at_chunk = len(parts) == 3
        if at_chunk and parts[2] != str(nxt).encode():
            return  # a closed chunk
        open_blob = self.kv.get(key if at_chunk else self._chunk_key(user_id, nxt))
        if not at_chunk and open_blob is not None:
            return
        newest = max(top, self._open_newest(user_id, nxt, open_blob))
        if not clock.may_expire(newest, keep):
            return
        partition = self.partition_of(user_id)
        if not self._expired(partition, newest):
            return
        for seq in range(first, nxt + 1):
            chunk_key = self._chunk_key(user_id, seq)
            if self.kv.get(chunk_key) is not None:
                self.kv.delete(partition, chunk_key)
        self._shapes.pop(user_id, None)
        if self.kv.get(self._meta_key(user_id)) is not None:
            self.kv.delete(partition, self._meta_key(user_id))
        self.swept_users += 1

    def _shape(self, user_id: str, seq: int, blob: bytes) -> tuple[int, int, int] | None:
        """(lines, oldest ts, newest ts) of the user's open chunk `blob` (of `seq`), when this index
        wrote it last; None when it does not know."""
        shape = self._shapes.get(user_id)
        if shape is not None and shape[0] == seq and shape[1] == len(blob):
            return shape[2:5]
        return None

    def _open_newest(self, user_id: str, seq: int, blob: bytes | None) -> int:
        """The newest ts in the user's open chunk `blob` (of `seq`); -1 for none."""
        shape = self._shape(user_id, seq, blob) if blob else None
        return shape[2] if shape is not None else _max_ts(blob)

    def flush(self) -> int:
        """Write the open chunk and (if changed) the meta of each user this batch added to; returns the
        records written. Clears the in-memory state."""
        n = 0
        shapes = self._shapes
        if len(shapes) + len(self._open) > SHAPES_MAX:
            shapes.clear()
        for user_id, u in self._open.items():
            if u.dirty:
                self.kv.put(u.partition, self._chunk_key(user_id, u.next), bytes(u.buf))
                shapes[user_id] = (u.next, len(u.buf), u.count, u.open_min, u.open_max,
                                   u.first, u.head, u.top)
                n += 1
            if u.meta_dirty:
                meta = {"first": u.first, "next": u.next, "head": u.head, "top": u.top}
                self.kv.put(u.partition, self._meta_key(user_id), packed(orjson.dumps(meta)))
                if not u.dirty:  # (a user the batch added to always is) the entry has an older meta
                    shapes.pop(user_id, None)
                n += 1
        self._open.clear()
        return n

    def forget(self) -> None:
        """Drop the in-memory state (after a rebalance; callers flush first). The KV holds the rest."""
        self._open.clear()
        self._shapes.clear()

    # -- reads
    def find(self, user_id: str, payment_id: str) -> IndexedPayment | None:
        """The indexed payment with this event id (including ones added in the unflushed batch), or None."""
        hit = self._locate(user_id, payment_id)
        return None if hit is None else _record(hit.row)

    def _locate(self, user_id: str, payment_id: str) -> _Hit | None:
        """Where the payment's line is: chunks newest first, the first matching line within a chunk."""
        needle = b"[" + orjson.dumps(payment_id) + b","
        u = self._open.get(user_id)
        if u is not None:
            first, nxt = u.first, u.next
        else:
            first, nxt, _, _ = self._meta(user_id)
        for seq in range(nxt, first - 1, -1):
            blob = u.buf if u is not None and seq == nxt else self.kv.get(self._chunk_key(user_id, seq))
            if not blob or needle not in blob:
                continue
            hit = _scan(blob, needle, payment_id)
            if hit is not None:
                hit.seq = seq
                return hit
        return None

    def recent(self, user_id: str, limit: int) -> list[IndexedPayment]:
        """The user's newest `limit` indexed payments, newest event time first (for the HTTP API)."""
        u = self._open.get(user_id)
        first, nxt = (u.first, u.next) if u is not None else self._meta(user_id)[:2]
        rows: list[list] = []
        for seq in range(nxt, first - 1, -1):
            blob = u.buf if u is not None and seq == nxt else self.kv.get(self._chunk_key(user_id, seq))
            if blob:
                rows.extend(chunk_rows(bytes(blob)))
            # Chunks hold payments in arrival order, so a late one may sit in an older chunk: read
            # one chunk past the limit before sorting.
            if len(rows) >= limit and seq < nxt:
                break
        rows.sort(key=lambda r: r[2], reverse=True)
        return [_record(r) for r in rows[:limit]]
