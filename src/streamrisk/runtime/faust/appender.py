"""Hands a worker's records to aiokafka's record accumulator: the producer's `send` without its
per-record overhead.

`AIOKafkaProducer.send` (and Faust's wrapper around it) does, for every record, a metadata wait, a set
of the topic's partitions, the partitioner's pure-Python murmur2, serializer checks and a log call:
about a sixth of a worker's CPU under load. Here a key's partition is remembered (per partition
count), and each record goes straight to the accumulator, which batches it with the others of its
partition exactly as `send` would (transactions included: the accumulator adds a partition to the
open transaction). Partitions are those of Kafka's default partitioner (murmur2 of the key), which
the contract requires.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from aiokafka.structs import TopicPartition

from ...core.partitioning import kafka_partition
from ..delivery import DeliveryFailed

_NO_HEADERS: list[Any] = []
_KEYS_REMEMBERED = 200_000  # partitions of recent keys; cleared when full (users and merchants repeat)


class Appender:
    """`Delivery`'s producer: `send` returns a future that is done once the record is acknowledged
    (its batch's), without waiting for it."""

    def __init__(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._accumulator = producer._message_accumulator
        self._timeout_s = producer._request_timeout_ms / 1000
        # Its `_partitions` (topic -> {partition: metadata}) is replaced, not updated, on every metadata
        # refresh: read it through the cluster each time.
        self._cluster = producer.client.cluster
        self._tps: dict[tuple[str, int], TopicPartition] = {}
        self._key_partition: dict[tuple[str, bytes], tuple[int, int]] = {}  # -> (count, partition)
        self._spread = 0  # round robin for records without a key (none of ours, but allowed)

    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None
    ) -> asyncio.Future[Any]:
        if partition is None:
            # The count is read per record (a dict lookup): partitions added to a topic are picked
            # up at the producer's next metadata refresh, as `send` would.
            parts = self._cluster._partitions.get(topic)
            if not parts:
                await self._producer.client._wait_on_metadata(topic)
                parts = self._cluster._partitions[topic]
            partition = self._partition(topic, key, len(parts))
        tp = self._tps.get((topic, partition))
        if tp is None:
            # A partition given by the caller (changelog records) still needs its leader known, or
            # its batch waits for one until it expires (a producer of our own knows no topics yet).
            if not self._cluster._partitions.get(topic):
                await self._producer.client._wait_on_metadata(topic)
            tp = self._tps[(topic, partition)] = TopicPartition(topic, partition)
        acc = self._accumulator
        pending = acc._batches.get(tp)
        # Into the partition's open batch, acknowledged by the batch's own future: aiokafka would also
        # make a future and a RecordMetadata per record, which nobody here reads.
        if (
            pending
            and acc._exception is None
            and not acc._closed
            and pending[-1]._builder.append(timestamp=None, key=key, value=value, headers=_NO_HEADERS)
            is not None
        ):
            return pending[-1].future
        # No open batch, or it is full: the accumulator opens one (or waits for room), as `send` does.
        try:
            return await acc.add_message(tp, key, value, self._timeout_s)
        except KafkaTimeoutError as exc:
            # The partition's batches have not left for the producer's whole request timeout: the
            # broker takes nothing. The same failure as an unacknowledged record, said as plainly.
            raise DeliveryFailed(
                f"no room in the producer for a record to {topic} after {self._timeout_s:g} s: the "
                "broker is not taking records; stopping so the input is read again"
            ) from exc

    def _partition(self, topic: str, key: bytes | None, count: int) -> int:
        if key is None:
            self._spread += 1
            return self._spread % count
        remembered = self._key_partition
        known = remembered.get((topic, key))
        if known is not None and known[0] == count:
            return known[1]
        if len(remembered) >= _KEYS_REMEMBERED:
            remembered.clear()
        p = kafka_partition(key, count)
        remembered[(topic, key)] = (count, p)
        return p
