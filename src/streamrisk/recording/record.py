"""`streamrisk record`: copy topics to a JSON Lines recording, without joining any consumer group.

By default it takes what the topics hold now, from their first offset to their end at start, and
stops. `--follow` keeps recording new records until Ctrl-C or `--duration`. Records of different
partitions are merged by record time, each partition's own order kept, so a backtest processes them
in about the order the workers did.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from .jsonl import Recorded, write_records


@dataclass
class RecordStats:
    per_topic: dict[str, int] = field(default_factory=dict)
    first_ts: int | None = None
    last_ts: int | None = None

    @property
    def total(self) -> int:
        return sum(self.per_topic.values())

    def add(self, rec: Recorded) -> None:
        self.per_topic[rec.topic] = self.per_topic.get(rec.topic, 0) + 1
        if rec.timestamp is not None:
            self.first_ts = rec.timestamp if self.first_ts is None else min(self.first_ts, rec.timestamp)
            self.last_ts = rec.timestamp if self.last_ts is None else max(self.last_ts, rec.timestamp)


def _recorded(r: ConsumerRecord, contract_name: str) -> Recorded:
    key = None if r.key is None else r.key.decode("utf-8", "replace")
    return Recorded(contract_name, key, r.value, r.timestamp, r.partition, r.offset)


def merge_by_time(per_partition: Sequence[list[Recorded]]) -> list[Recorded]:
    """One list ordered by record time; records of one partition keep their relative order."""
    return list(heapq.merge(*per_partition, key=lambda r: r.timestamp or 0))


async def _partitions(consumer: AIOKafkaConsumer, topic: str, timeout_s: float) -> list[TopicPartition]:
    deadline = time.monotonic() + timeout_s
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return [TopicPartition(topic, p) for p in sorted(parts)]
        if time.monotonic() > deadline:
            raise LookupError(f"topic {topic!r} does not exist on the broker (check --topic-prefix)")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.2)


async def record(
    bootstrap: str,
    topics: Sequence[str],
    out: Path,
    *,
    prefix: str = "",
    follow: bool = False,
    duration_s: float | None = None,
    stop: asyncio.Event | None = None,
) -> RecordStats:
    """Write `topics` (contract names) to `out`; see the module docstring for when it stops."""
    names = {prefix + t: t for t in topics}
    stats = RecordStats()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    try:
        tps = [tp for name in names for tp in await _partitions(consumer, name, 10.0)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = None if duration_s is None else time.monotonic() + duration_s
        with out.open("wb") as fh:
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                chunk = [
                    [_recorded(r, names[tp.topic]) for r in records]
                    for tp, records in batch.items()
                ]
                merged = merge_by_time(chunk)
                write_records(fh, merged)
                for rec in merged:
                    stats.add(rec)
                if stop is not None and stop.is_set():
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if not follow and await _at_end(consumer, tps):
                    break
    finally:
        await consumer.stop()
    return stats


async def read_to_end(bootstrap: str, topics: Sequence[str]) -> dict[str, list[ConsumerRecord]]:
    """Every record the (deployed) `topics` hold now, per topic, without a consumer group."""
    out: dict[str, list[ConsumerRecord]] = {t: [] for t in topics}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    try:
        tps = [tp for name in topics for tp in await _partitions(consumer, name, 10.0)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while not await _at_end(consumer, tps):
            for tp, records in (await consumer.getmany(timeout_ms=200, max_records=5000)).items():
                out[tp.topic].extend(records)
    finally:
        await consumer.stop()
    return out


async def _at_end(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> bool:
    # The fetch high watermark, not ListOffsets: some brokers answer the latter short (Tansu).
    for tp in tps:
        high = consumer.highwater(tp)
        if high is None or await consumer.position(tp) < high:
            return False
    return True
