"""Fraud-alert dedupe: one alert per subject and reason code within a window of event time.

A burst of 30 payments fires the velocity rule 20 times; the fraud team wants one alert for the
incident, not 20. The time of the last alert sent per (subject, reason) lives in the state table, so
the dedupe survives a restart and moves with the subject's partition. An entry expires once the
partition's event-time clock is past it by the window plus the allowed lateness: the background sweep
deletes it (sweep.py), and until then `admit` ignores it, so outputs do not depend on the sweep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from . import keys
from .kv import KV, SEP
from .sweep import PartitionClock

KIND = keys.ALERT_DEDUPE
_PREFIX = KIND + SEP
_SEP = SEP.decode()


class AlertGate:
    """Decides which of an alert's reasons are news; records them as sent."""

    def __init__(
        self,
        kv: KV,
        window_ms: int,
        clock: PartitionClock | None = None,
        partition_of: Callable[[str], int] | None = None,
    ) -> None:
        self.kv = kv
        self.window_ms = window_ms
        self.clock = clock
        self.partition_of = partition_of
        self.suppressed = 0
        self.swept = 0  # expired entries deleted

    def _key(self, subject_type: str, subject_id: str, reason: str) -> bytes:
        # KIND, subject type, subject id and reason joined by SEP (one encode instead of three).
        return _PREFIX + f"{subject_type}{_SEP}{subject_id}{_SEP}{reason}".encode()

    def _expired(self, partition: int, last: int) -> bool:
        return self.clock is not None and self.clock.expired(partition, last, self.window_ms)

    def admit(
        self, partition: int, subject_type: str, subject_id: str, reasons: Iterable[str], ts: int
    ) -> list[str]:
        """The reasons with no alert for this subject within the window around `ts`.

        Those are recorded as alerted at `ts`; the others are counted in `suppressed`.
        """
        fresh: list[str] = []
        for reason in reasons:
            key = self._key(subject_type, subject_id, reason)
            raw = self.kv.get(key)
            if raw is not None:
                last = int(raw)
                if abs(ts - last) < self.window_ms and not self._expired(partition, last):
                    self.suppressed += 1
                    continue
            self.kv.put(partition, key, str(ts).encode())
            fresh.append(reason)
        return fresh

    def sweep_key(self, key: bytes) -> None:
        """Delete the entry under `key` if it has expired (see the module docstring)."""
        if self.partition_of is None or self.clock is None or key.count(SEP) != 3:
            return
        raw = self.kv.get(key)
        if raw is None or not self.clock.may_expire(int(raw), self.window_ms):
            return  # recent (most are): no need to find its partition
        partition = self.partition_of(key.split(SEP)[2].decode())
        if self._expired(partition, int(raw)):
            self.kv.delete(partition, key)
            self.swept += 1
