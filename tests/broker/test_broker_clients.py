"""aiokafka against the session broker: metadata, produce, consume in a group, commit."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamrisk.broker._protocol import probe_metadata

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

# Short enough for fast tests, within Kafka's default group.min.session.timeout.ms (6 s).
GROUP_SETTINGS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


def _consumer(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        **GROUP_SETTINGS,
    )


async def test_metadata_lists_the_advertised_loopback_broker(bootstrap: str) -> None:
    host, port = bootstrap.split(":")
    assert host == "127.0.0.1"
    brokers = probe_metadata(host, int(port))
    assert [(b.host, b.port) for b in brokers] == [(host, int(port))]

    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    await client.bootstrap()
    try:
        assert {(b.host, b.port) for b in client.cluster.brokers()} == {(host, int(port))}
    finally:
        await client.close()


async def test_produce_then_consume_in_group_and_resume_from_commit(bootstrap: str) -> None:
    topic = f"broker-test-{uuid.uuid4().hex[:10]}"
    group = f"group-{uuid.uuid4().hex[:10]}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        # Fixed key: both records land in one partition, so order is defined.
        first = await producer.send_and_wait(topic, b"one", key=b"k")

        consumer = _consumer(bootstrap, topic, group)
        await consumer.start()
        try:
            msg = await asyncio.wait_for(consumer.getone(), 30)
            assert (msg.key, msg.value, msg.offset) == (b"k", b"one", first.offset)
            assert TopicPartition(topic, msg.partition) in consumer.assignment()
            await consumer.commit()
            tp = TopicPartition(topic, msg.partition)
            assert await consumer.committed(tp) == msg.offset + 1
        finally:
            await consumer.stop()

        await producer.send_and_wait(topic, b"two", key=b"k")
        # Resume via manual assignment rather than a second group join: Tansu starts groups
        # at generation 0, for which aiokafka skips LeaveGroup, so a rejoin would wait for
        # the old member's session to expire (~11 s with these settings).
        again = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
        await again.start()
        try:
            again.assign([tp])
            msg = await asyncio.wait_for(again.getone(), 30)
            assert msg.value == b"two", "must resume at the group's committed offset"
        finally:
            await again.stop()
    finally:
        await producer.stop()
