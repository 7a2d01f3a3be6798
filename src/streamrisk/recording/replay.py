"""`streamrisk replay`: send a recording back to the broker, keys and values unchanged.

Pacing follows event time: at `speed` N, a record whose event time is t ms after the first record's
is sent t / N ms after the start. Event time only moves forward: a late record (older `ts` than one
already sent) goes out at once, in file order, and so does a record without a `ts` (malformed input).
`speed=None` sends as fast as the broker takes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..loadgen.produce import make_producer
from .jsonl import Recorded

# Deliveries awaited together; bounds memory and keeps the file order per partition.
WINDOW = 2000


@dataclass
class ReplayStats:
    sent: dict[str, int] = field(default_factory=dict)
    elapsed_s: float = 0.0
    event_span_ms: int = 0

    @property
    def total(self) -> int:
        return sum(self.sent.values())


class Pacer:
    """When each record is due, in seconds after the start; None when it may go at once."""

    def __init__(self, speed: float | None = None, rate: float | None = None) -> None:
        if speed is not None and speed <= 0:
            raise ValueError(f"--speed must be > 0 (got {speed})")
        if rate is not None and rate <= 0:
            raise ValueError(f"--rate must be > 0 (got {rate})")
        self.speed, self.rate = speed, rate
        self.first_ts: int | None = None
        self.newest = 0
        self.sent = 0

    def due(self, rec: Recorded) -> float | None:
        n, self.sent = self.sent, self.sent + 1
        if self.rate is not None:
            return n / self.rate
        if self.speed is None:
            return None
        ts = rec.event_ts()
        if ts is None:
            return None  # malformed input: sent in its place, at the current pace
        if self.first_ts is None:
            self.first_ts = self.newest = ts
        self.newest = max(self.newest, ts)
        return (self.newest - self.first_ts) / 1000.0 / self.speed

    @property
    def span_ms(self) -> int:
        return 0 if self.first_ts is None else self.newest - self.first_ts


async def replay(
    bootstrap: str,
    records: Iterable[Recorded],
    *,
    prefix: str = "",
    speed: float | None = None,
    rate: float | None = None,
) -> ReplayStats:
    """Send `records` in order, paced by event time divided by `speed`, or `rate` records/s, or neither."""
    pacer = Pacer(speed, rate)
    stats = ReplayStats()
    producer = make_producer(bootstrap)
    await producer.start()
    start = time.monotonic()
    pending: list[asyncio.Future] = []
    try:
        for rec in records:
            due = pacer.due(rec)
            if due is not None and start + due > time.monotonic():
                await asyncio.gather(*pending)
                pending.clear()
                await asyncio.sleep(start + due - time.monotonic())
            key = None if rec.key is None else rec.key.encode()
            pending.append(await producer.send(prefix + rec.topic, rec.value, key=key))
            stats.sent[rec.topic] = stats.sent.get(rec.topic, 0) + 1
            if len(pending) >= WINDOW:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
        stats.elapsed_s = time.monotonic() - start
        stats.event_span_ms = pacer.span_ms
    return stats
