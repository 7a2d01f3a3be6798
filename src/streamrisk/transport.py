"""Faust's aiokafka transport, made safe for any Kafka-compatible broker.

- Faust hard-codes `fetch_max_wait_ms=1500` for worker consumers. A broker that does not wake a parked
  fetch when data arrives then adds up to 1.5 s to every decision; a risk decision has a budget of
  milliseconds, so the wait comes from `Settings.fetch_max_wait_ms` instead.
- Table recovery reads each changelog partition up to its end offset (ListOffsets). Some
  Kafka-compatible brokers answer that with the start of the last record batch rather than the end,
  and recovery would then silently stop short of the newest state. A fetch's high watermark is
  authoritative, so the end offsets recovery uses are confirmed with one fetch per partition.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import aiokafka
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.drivers.aiokafka import server_list
from faust.types import TP

SCHEME = "streamrisk"


async def confirmed_end_offsets(
    bootstrap: list[str], listed: Mapping[TP, int], timeout_ms: int = 2000
) -> dict[TP, int]:
    """End offsets no lower than the high watermark a fetch reports for each partition."""
    out = dict(listed)
    todo = [tp for tp, end in listed.items() if end > 0]
    if not todo:
        return out
    probe = aiokafka.AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
    )
    await probe.start()
    try:
        parts = [aiokafka.TopicPartition(tp.topic, tp.partition) for tp in todo]
        probe.assign(parts)
        for part, tp in zip(parts, todo, strict=True):
            probe.seek(part, listed[tp] - 1)
        pending = set(parts)
        deadline = time.monotonic() + timeout_ms / 1000
        while pending and time.monotonic() < deadline:
            await probe.getmany(*pending, timeout_ms=100, max_records=1)
            for part in list(pending):
                hw = probe.highwater(part)
                if hw is not None:
                    pending.discard(part)
                    tp = TP(part.topic, part.partition)
                    out[tp] = max(out[tp], hw)
    finally:
        await probe.stop()
    return out


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    _bootstrap: list[str]

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        listed = await super()._highwaters(partitions)
        if self.consumer.in_transaction:
            return listed
        return await confirmed_end_offsets(self._bootstrap, listed)

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        self._bootstrap = server_list(transport.url, transport.default_port)
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # Read by AIOKafkaConsumer.start() when it builds its Fetcher; there is no public setter.
            consumer._fetch_max_wait_ms = int(wait_ms)
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


TRANSPORTS[SCHEME] = f"{__name__}:Transport"


def broker_urls(bootstrap: str) -> list[str]:
    """`host:port[,host:port]` to the URL list Faust takes, using this transport."""
    return [f"{SCHEME}://{hp.strip()}" for hp in bootstrap.split(",") if hp.strip()]


class OffsetContinuity:
    """Checks that the agent sees every offset of every input partition, and says where to re-read.

    Faust can lose a record it is handing to a stream when a rebalance suspends the flow at that
    moment: it still advances its read offset, and its commit may later skip the record. So the
    agent tracks, per partition, the next offset it expects (from the committed offset, or the
    partition's first offset when nothing was committed). A batch that jumps past it, or an idle
    agent behind Faust's read offset, means records were lost on the way: the caller seeks back.
    Re-reading is safe because records are deduplicated by event id.
    """

    def __init__(self, app: Any, topics: set[str]) -> None:
        self.app = app  # app.consumer is created on first access: not before the worker runs
        self.topics = topics
        self.expected: dict[TP, int] = {}

    @property
    def consumer(self) -> Any:
        return self.app.consumer

    def reset(self) -> None:
        """After a rebalance Faust seeks to the committed offsets; start from there again."""
        self.expected.clear()

    async def _baseline(self, tp: TP) -> int:
        committed = self.consumer._committed_offset.get(tp)  # no public view in Faust
        if committed is not None:
            return committed
        earliest = await self.consumer.earliest_offsets(tp)
        return earliest.get(tp, 0) or 0

    async def gaps_in(self, offsets: list[tuple[TP, int]]) -> dict[TP, int]:
        """Record a batch's (tp, offset) pairs in arrival order; return {tp: first missing offset}."""
        gaps: dict[TP, int] = {}
        expected = self.expected
        for tp, offset in offsets:
            want = expected.get(tp)
            if want is None:
                want = expected[tp] = await self._baseline(tp)
            if offset > want and tp not in gaps:
                gaps[tp] = want
            if offset >= want:
                expected[tp] = offset + 1
        for tp, offset in gaps.items():
            expected[tp] = offset
        return gaps

    async def restart_points(self) -> dict[TP, int]:
        """Where each assigned input partition must be read from after a rebalance: its committed
        offset, or its first offset when nothing was committed. Faust resumes fetching before it
        seeks, and leaves uncommitted partitions wherever an earlier assignment put them."""
        tps = [tp for tp in self.consumer.assignment() if tp.topic in self.topics]
        committed = self.consumer._committed_offset
        out = {tp: committed[tp] for tp in tps if committed.get(tp) is not None}
        missing = [tp for tp in tps if tp not in out]
        if missing:
            earliest = await self.consumer.earliest_offsets(*missing)
            out.update({tp: earliest.get(tp, 0) or 0 for tp in missing})
        self.expected = dict(out)
        return out

    def behind_reader(self) -> dict[TP, int]:
        """While the agent is idle: partitions Faust read past what reached the agent."""
        read = self.consumer._read_offset
        out: dict[TP, int] = {}
        for tp in self.consumer.assignment():
            if tp.topic not in self.topics:
                continue
            last_read, want = read.get(tp), self.expected.get(tp)
            if last_read is not None and want is not None and last_read >= want:
                out[tp] = want
        return out
