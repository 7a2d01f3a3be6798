"""Fraud-alert dedupe: one alert per subject and reason code within a window of event time.

A burst of 30 payments fires the velocity rule 20 times; the fraud team wants one alert for the
incident, not 20. The time of the last alert sent per (subject, reason) lives in the state table, so
the dedupe survives a restart and moves with the subject's partition.
"""

from __future__ import annotations

from collections.abc import Iterable

from .store import KV, SEP

KIND = b"a"


class AlertGate:
    """Decides which of an alert's reasons are news; records them as sent."""

    def __init__(self, kv: KV, window_ms: int) -> None:
        self.kv = kv
        self.window_ms = window_ms
        self.suppressed = 0

    def _key(self, subject_type: str, subject_id: str, reason: str) -> bytes:
        return SEP.join((KIND, subject_type.encode(), subject_id.encode(), reason.encode()))

    def admit(
        self, partition: int, subject_type: str, subject_id: str, reasons: Iterable[str], ts: int
    ) -> list[str]:
        """The reasons with no alert for this subject within the window around `ts`.

        Those are recorded as alerted at `ts`; the others are counted in `suppressed`.
        """
        fresh: list[str] = []
        for reason in reasons:
            key = self._key(subject_type, subject_id, reason)
            last = self.kv.get(key)
            if last is not None and abs(ts - int(last)) < self.window_ms:
                self.suppressed += 1
                continue
            self.kv.put(partition, key, str(ts).encode())
            fresh.append(reason)
        return fresh
