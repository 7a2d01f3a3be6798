"""Sending records to Kafka at a target rate (produce, load test) or from a JSON Lines file (replay)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from .synthetic import Record, Traffic

MAX_PENDING = 20_000
# Called with (contract topic, key, event_id or None, wall-clock send time in seconds).
OnSend = Callable[[str, str, str | None, float], None]


@dataclass
class ProduceStats:
    sent: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    elapsed_s: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.sent.values())


def make_producer(bootstrap: str, **kw: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks="all", **kw)


def synthetic_stream(traffic: Traffic, clock: Callable[[], float] = time.time) -> Iterator[Any]:
    while True:
        yield traffic.next(int(clock() * 1000))


async def produce(
    bootstrap: str,
    records: Iterable[Record | tuple[str, str, bytes]],
    *,
    rate: float,
    duration_s: float | None = None,
    limit: int | None = None,
    topic_prefix: str = "",
    on_send: OnSend | None = None,
    stop: asyncio.Event | None = None,
) -> ProduceStats:
    """Send `records` at about `rate` per second until the duration, the limit or the records end."""
    stats = ProduceStats()
    producer = make_producer(bootstrap)
    await producer.start()
    tick = 0.01
    per_tick = max(1.0, rate * tick)
    start = time.monotonic()
    budget = 0.0
    it = iter(records)
    # Deliveries are awaited in the background: waiting for each tick's acks would cap the rate at
    # one tick's records per broker round trip. Past MAX_PENDING unacknowledged we do wait.
    pending: deque[asyncio.Future[Any]] = deque()
    try:
        while True:
            if stop is not None and stop.is_set():
                break
            elapsed = time.monotonic() - start
            if duration_s is not None and elapsed >= duration_s:
                break
            budget = min(budget + per_tick, per_tick * 10)
            futures = []
            while budget >= 1.0:
                if limit is not None and stats.total >= limit:
                    break
                try:
                    rec = next(it)
                except StopIteration:
                    limit = stats.total
                    break
                budget -= 1.0
                if isinstance(rec, Record):
                    value = orjson.dumps(rec.value)
                    topic, key, eid = rec.topic, rec.key, rec.value.get("event_id")
                else:
                    topic, key, value = rec
                    eid = None
                    stats.malformed += 1
                if on_send is not None:
                    on_send(topic, key, eid, time.time())
                futures.append(await producer.send(topic_prefix + topic, value, key=key.encode()))
                stats.sent[topic] = stats.sent.get(topic, 0) + 1
            pending.extend(futures)
            while pending and pending[0].done():  # acks come roughly in send order
                pending.popleft().result()  # a failed delivery fails the run
            if len(pending) > MAX_PENDING:
                await asyncio.gather(*pending)
                pending.clear()
            if limit is not None and stats.total >= limit:
                break
            # Pace to the target rate: sleep until the next tick is due.
            next_due = start + (elapsed // tick + 1) * tick
            await asyncio.sleep(max(0.0, next_due - time.monotonic()))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
        stats.elapsed_s = time.monotonic() - start
    return stats


def read_jsonl(path: Path) -> Iterator[Record]:
    """Replay input: one `{"topic": ..., "key": ..., "value": {...}}` per line (CONTRACT.md)."""
    with path.open("rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
                yield Record(obj["topic"], str(obj["key"]), obj["value"])
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f'{path}:{n}: expected {{"topic", "key", "value"}} JSON ({exc})') from None
