"""`streamrisk replay`: send a recording back to the broker, keys and values unchanged.

Pacing follows event time: at `speed` N, a record whose event time is t ms after the first record's
is sent t / N ms after the start. Event time only moves forward: a late record (older `ts` than one
already sent) goes out at once, in file order. `speed=None` sends as fast as the broker takes them.
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


async def replay(
    bootstrap: str,
    records: Iterable[Recorded],
    *,
    prefix: str = "",
    speed: float | None = None,
    rate: float | None = None,
) -> ReplayStats:
    """Send `records` in order, paced by event time divided by `speed`, or `rate` records/s, or neither."""
    if speed is not None and speed <= 0:
        raise ValueError(f"--speed must be > 0 (got {speed})")
    if rate is not None and rate <= 0:
        raise ValueError(f"--rate must be > 0 (got {rate})")
    stats = ReplayStats()
    producer = make_producer(bootstrap)
    await producer.start()
    start = time.monotonic()
    first_ts: int | None = None
    newest = 0
    pending: list[asyncio.Future] = []
    try:
        for n, rec in enumerate(records):
            due: float | None = None
            if speed is not None:
                ts = rec.event_ts()
                if ts is not None:
                    if first_ts is None:
                        first_ts = newest = ts
                    newest = max(newest, ts)
                    due = start + (newest - first_ts) / 1000.0 / speed
            elif rate is not None:
                due = start + n / rate
            if due is not None and due > time.monotonic():
                await asyncio.gather(*pending)
                pending.clear()
                await asyncio.sleep(due - time.monotonic())
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
        stats.event_span_ms = 0 if first_ts is None else newest - first_ts
    return stats
