"""`streamrisk record`: copy topics to a JSON Lines recording, without joining any consumer group.

By default it takes what the topics hold now, from their first offset to their end, and stops.
`--follow` keeps recording new records until SIGINT (Ctrl-C), SIGTERM or `--duration`; each fetch is
written whole and flushed, so a recording stopped, or even killed, between fetches holds only whole
lines. Records of different partitions
are merged by record time (when they were produced), each partition's own order kept, so a backtest
processes a chargeback after the payment it names, as the records were produced.
"""

from __future__ import annotations

import asyncio
import heapq
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from .jsonl import Recorded, read_recording, write_records


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
    consumer, tps = await _reader_at_start(bootstrap, names)
    try:
        deadline = None if duration_s is None else time.monotonic() + duration_s

        async def batches() -> AsyncIterator[dict[TopicPartition, list[Recorded]]]:
            while True:
                batch = await consumer.getmany(timeout_ms=200, max_records=5000)
                yield {tp: [_recorded(r, names[tp.topic]) for r in rs] for tp, rs in batch.items()}
                if stop is not None and stop.is_set():
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    return
                if not follow and await _at_end(consumer, tps):
                    return

        if follow:
            return await _write_as_fetched(batches(), out)
        return await _write_merged(batches(), out)
    finally:
        await consumer.stop()


async def _write_as_fetched(batches: AsyncIterator[dict[TopicPartition, list[Recorded]]],
                            out: Path) -> RecordStats:
    """Following: each fetch merged by record time (a fetch may hold older records of a partition
    than the previous one held of another; a snapshot does not have that limit)."""
    stats = RecordStats()
    with out.open("wb") as fh:
        async for batch in batches:
            merged = merge_by_time(list(batch.values()))
            if merged:
                write_records(fh, merged)
                fh.flush()  # whole lines on disk at every fetch: a kill between fetches cuts none
            for rec in merged:
                stats.add(rec)
    return stats


async def _write_merged(batches: AsyncIterator[dict[TopicPartition, list[Recorded]]],
                        out: Path) -> RecordStats:
    """A snapshot: each partition spooled to a file of its own, then all merged by record time.

    Fetches return partitions unevenly (a small topic whole, a big one in pieces), so merging fetch
    by fetch would put a chargeback before the payment it names; the files keep memory flat.
    """
    stats = RecordStats()
    with tempfile.TemporaryDirectory(prefix="streamrisk-record-") as tmp:
        spools: dict[TopicPartition, IO[bytes]] = {}
        try:
            async for batch in batches:
                for tp, recs in batch.items():
                    if tp not in spools:
                        spools[tp] = (Path(tmp) / f"{len(spools)}.jsonl").open("wb")
                    write_records(spools[tp], recs)
        finally:
            for fh in spools.values():
                fh.close()
        parts = [read_recording(Path(tmp) / f"{i}.jsonl") for i in range(len(spools))]
        with out.open("wb") as fh:
            chunk: list[Recorded] = []
            for rec in heapq.merge(*parts, key=lambda r: r.timestamp or 0):
                chunk.append(rec)
                stats.add(rec)
                if len(chunk) >= 10_000:
                    write_records(fh, chunk)
                    chunk.clear()
            write_records(fh, chunk)
    return stats


async def read_to_end(bootstrap: str, topics: Sequence[str]) -> dict[str, list[ConsumerRecord]]:
    """Every record the (deployed) `topics` hold now, per topic, without a consumer group."""
    out: dict[str, list[ConsumerRecord]] = {t: [] for t in topics}
    consumer, tps = await _reader_at_start(bootstrap, topics)
    try:
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


async def _reader_at_start(
    bootstrap: str, topics: Iterable[str]
) -> tuple[AIOKafkaConsumer, list[TopicPartition]]:
    """A started consumer without a group, on every partition of `topics`, at their beginning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap.split(","), group_id=None, enable_auto_commit=False,
        fetch_max_wait_ms=50,
        # What the workers read: never a record of an aborted transaction (see transport.py).
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        tps = [tp for name in topics for tp in await _partitions(consumer, name, 10.0)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
    except BaseException:
        await consumer.stop()
        raise
    return consumer, tps
