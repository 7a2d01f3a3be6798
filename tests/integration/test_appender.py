"""appender.py on a real broker: records land where aiokafka's own `send` would put them, each
acknowledged, in the order handed over per partition."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamrisk.runtime.faust.appender import Appender
from tests.harness import create_topic, unique

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_appended_records_land_on_the_default_partitioners_partition_in_order(bootstrap: str) -> None:
    topic = unique("appender")
    await create_topic(bootstrap, topic, 3)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        appender = Appender(producer)
        keys = [b"user-%d" % (i % 17) for i in range(200)]
        futures = [await appender.send(topic, k, b"%d" % i, None) for i, k in enumerate(keys)]
        futures.append(await appender.send(topic, b"pinned", b"explicit", 2))
        acks = await asyncio.gather(*futures)
        # The reference: aiokafka's send, with its default partitioner, of the same keys.
        expected = [(await (await producer.send(topic, b"ref", key=k))).partition for k in set(keys)]
    finally:
        await producer.stop()
    assert acks[-1].partition == 2
    by_key = {k: a.partition for k, a in zip(keys, acks, strict=False)}
    assert [by_key[k] for k in set(keys)] == expected

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got: dict[int, list[bytes]] = {0: [], 1: [], 2: []}
        while sum(map(len, got.values())) < len(acks) + len(expected):
            for tp, recs in (await consumer.getmany(timeout_ms=500)).items():
                got[tp.partition].extend(r.value for r in recs)
    finally:
        await consumer.stop()
    for p in range(3):  # per partition, in the order handed over
        sent = [b"%d" % i for i, k in enumerate(keys) if by_key[k] == p] + [b"explicit"] * (p == 2)
        assert [v for v in got[p] if v != b"ref"] == sent
