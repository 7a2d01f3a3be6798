"""Chargebacks that arrive before their payment, held until it comes or its hold runs out.

Payments and chargebacks are separate topics, read independently, so a chargeback sent moments after
its payment can be processed first. It is then held under `b"k\\x1f" + user_id + b"\\x1f" +
payment_id` (the user's partition, the same KV as the payment index), as orjson `[chargeback_id, ts,
offset]` (the chargeback's input offset; records held before offsets were kept have two fields, those
held before times were kept hold the bare chargeback id). When the payment is indexed it
claims the hold and is marked as fraud (processor.py). A claim leaves the hold in place: a payment read
again after a crash that lost its fraud mark (but not the claim) claims it again. Every hold is swept
after `retention_ms` of event time, the payment index's retention.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from . import keys
from .kv import KV, SEP, packed
from .sweep import PartitionClock

KIND = keys.EARLY_CHARGEBACK


class EarlyChargebacks:
    """Chargebacks whose payment is not indexed yet, by (user, payment id)."""

    def __init__(
        self,
        kv: KV,
        retention_ms: int,
        clock: PartitionClock | None = None,
        partition_of: Callable[[str], int] | None = None,
    ) -> None:
        self.kv = kv
        self.retention_ms = retention_ms
        # Event-time clock and key -> partition for expiring holds (sweep.py).
        self.clock = clock
        self.partition_of = partition_of
        self.swept = 0  # holds whose payment never came, for /stats

    @staticmethod
    def _key(user_id: str, payment_id: str) -> bytes:
        return KIND + SEP + user_id.encode() + SEP + payment_id.encode()

    @staticmethod
    def _value(raw: bytes) -> tuple[str, int | None, int | None]:
        """(chargeback id, its ts, its input offset); None for what older records did not keep."""
        if raw.startswith(b"["):
            v = orjson.loads(raw)
            return v[0], v[1], v[2] if len(v) > 2 else None
        return raw.decode(), None, None

    def _expired(self, partition: int, ts: int) -> bool:
        return self.clock is not None and self.clock.expired(partition, ts, self.retention_ms)

    def hold(
        self, partition: int, user_id: str, payment_id: str, chargeback_id: str, ts: int,
        offset: int | None = None,
    ) -> None:
        """Remember a chargeback (at `ts`, input `offset`) whose payment is not indexed, to mark the
        payment if it comes later. One that names a payment never sent is swept after `retention_ms`."""
        value = [chargeback_id, ts] if offset is None else [chargeback_id, ts, offset]
        self.kv.put(partition, self._key(user_id, payment_id), packed(orjson.dumps(value)))

    def claim(self, partition: int, user_id: str, payment_id: str) -> str | None:
        """The id of a chargeback that came before this just-indexed payment; None if none did (or its
        hold has run out: then what the sweep would have done is done here)."""
        held = self.claim_held(partition, user_id, payment_id)
        return None if held is None else held[0]

    def claim_held(self, partition: int, user_id: str, payment_id: str) -> tuple[str, int | None] | None:
        """`claim`, with the chargeback's input offset (None when not kept). The hold stays (see the
        module docstring): marking a payment is the same when done twice."""
        key = self._key(user_id, payment_id)
        raw = self.kv.get(key)
        if raw is None:
            return None
        chargeback_id, ts, offset = self._value(raw)
        if ts is not None and self._expired(partition, ts):
            self.kv.delete(partition, key)
            self.swept += 1
            return None
        return chargeback_id, offset

    # -- background expiry (sweep.py)
    def sweep_key(self, key: bytes) -> None:
        """Remove the hold under `key` once it has run out."""
        if self.clock is None or self.partition_of is None:
            return
        parts = key.split(SEP)
        if key[:1] != KIND or len(parts) != 3:
            return  # not a key of ours (ids never hold the separator)
        raw = self.kv.get(key)
        if raw is None:
            return
        chargeback_id, ts, _ = self._value(raw)
        partition = self.partition_of(parts[1].decode())
        if ts is None:  # held before times were kept: start its hold now
            now = self.clock.ts.get(partition)
            if now is not None:
                self.kv.put(partition, key, packed(orjson.dumps([chargeback_id, now])))
        elif self._expired(partition, ts):
            self.kv.delete(partition, key)
            self.swept += 1
