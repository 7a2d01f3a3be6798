"""The offset helpers the chaos test and bench_pipeline judge by: end offsets of every partition, and a
group's committed offsets, as any outside client would read them."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from tests.harness import committed_offsets, create_topic, end_offsets, unique

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_end_and_committed_offsets_match_what_was_written_and_committed(bootstrap: str) -> None:
    topic, group = unique("offsets"), unique("group")
    await create_topic(bootstrap, topic, 3)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        written = {0: 5, 1: 0, 2: 12}
        for partition, n in written.items():
            for i in range(n):
                await producer.send_and_wait(topic, b"x%d" % i, partition=partition)
    finally:
        await producer.stop()
    tps = [TopicPartition(topic, p) for p in written]
    assert await end_offsets(bootstrap, [topic]) == {tp: written[tp.partition] for tp in tps}

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.commit({tps[0]: 3, tps[2]: 12})
    finally:
        await consumer.stop()
    assert await committed_offsets(bootstrap, group, tps) == {tps[0]: 3, tps[1]: 0, tps[2]: 12}
