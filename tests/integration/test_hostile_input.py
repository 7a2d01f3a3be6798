"""Hostile input through a worker on the broker, as outside clients would send it: the worker stays up,
every invalid record is dead-lettered once with a reason, its original key and bytes, every valid payment
is decided once, and a librdkafka producer on its default partitioner is told what to fix."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections import Counter
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamrisk.core.partitioning import kafka_partition
from streamrisk.runtime.topics import TopicLayoutError, ensure_topics
from streamrisk.settings import Settings
from tests.harness import Client, WorkerProcess, get_json, now_ms, payment, unique, wait_for
from tests.hostile import Hostile, Sent

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

PARTITIONS = 4  # the worker's default


async def ready(worker: WorkerProcess) -> None:
    async with aiohttp.ClientSession() as session:

        async def assigned() -> object:
            stats = await get_json(session, worker, "/stats")
            return True if stats and stats.get("assigned_partitions") else stats

        await wait_for(assigned, 60, "worker assigned its partitions")


async def stats(worker: WorkerProcess) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        body = await get_json(session, worker, "/stats")
    assert body is not None, worker.log()
    return body


def original(letter: dict[str, Any]) -> bytes:
    """What a dead letter says the original value was (its prefix when cut)."""
    if letter.get("value_encoding") == "base64":
        return base64.b64decode(letter["value"])
    return letter["value"].encode()


def check_letter(letter: dict[str, Any], sent: Sent) -> None:
    raw = sent.value or b""
    if letter.get("value_truncated"):
        assert letter["value_size"] == len(raw) and raw.startswith(original(letter))
        assert letter["value_sha256"] == hashlib.sha256(raw).hexdigest()
    else:
        assert original(letter) == raw, sent.kind
    assert letter["error"], sent.kind
    assert letter["_key"] == sent.key, (sent.kind, letter["_key"] and letter["_key"][:60])  # whole


async def test_fuzzed_stream_is_sorted_into_decisions_and_dead_letters(
    bootstrap: str, prefix: str, worker: WorkerProcess, client: Client
) -> None:
    await ready(worker)
    sent = Hostile(seed=20261128, now_ms=now_ms(), partitions=PARTITIONS).stream(5200, 1200, 300)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(prefix + s.topic, s.value, key=s.key, partition=s.partition) for s in sent
        ]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    where = {(prefix + s.topic, m.partition, m.offset): s for s, m in zip(sent, metas, strict=True)}
    invalid = Counter(k for k, s in where.items() if not s.valid)
    expected = Counter(s.event_id for s in sent if s.valid and s.topic == "payments")
    assert sum(invalid.values()) >= 3500

    letters = await client.read(
        "dead-letters", until=lambda rs: len(rs) >= len(invalid), timeout=90, settle=2, with_key=True
    )
    # Processing is at-least-once: a record read again after a rebalance repeats its dead letter (the
    # same source partition and offset) or its decision (the same decision_id); consumers drop repeats.
    got = {(d["source_topic"], d["partition"], d["offset"]) for d in letters}
    wrong = [(where[k].kind if k in where else k) for k in got ^ set(invalid)]
    assert got == set(invalid), f"dead letters differ from invalid records sent: {wrong[:10]}"
    for d in letters:
        check_letter(d, where[(d["source_topic"], d["partition"], d["offset"])])

    decisions = await client.read(
        "risk-decisions", until=lambda rs: len({d["event_id"] for d in rs}) >= len(expected), timeout=60,
        settle=1,
    )
    assert Counter(d["event_id"] for d in {d["decision_id"]: d for d in decisions}.values()) == expected
    advances = {orjson.loads(s.value)["event_id"] for s in sent if s.valid and s.topic == "advances"}
    advanced = await client.read(
        "advance-decisions", until=lambda rs: {d["event_id"] for d in rs} >= advances, timeout=60, settle=1,
    )
    assert {d["event_id"] for d in advanced} == advances
    assert worker.proc is not None and worker.proc.poll() is None, worker.log()
    body = await stats(worker)
    assert body["failed_records"] == 0, worker.log()  # every invalid record was caught by validation
    assert body["mispartitioned"] == sum(s.kind == "mispartitioned" for s in sent)


async def test_librdkafka_default_partitioner_is_dead_lettered_and_murmur2_random_accepted(
    bootstrap: str, prefix: str, worker: WorkerProcess, client: Client
) -> None:
    from confluent_kafka import Producer

    await ready(worker)
    delivered: list[tuple[str, str, int, int]] = []  # (producer, user, partition, offset)

    def produce(name: str, config: dict[str, str]) -> None:
        p = Producer({"bootstrap.servers": bootstrap, **config})
        for i in range(150):
            user = f"rdkafka-{name}-{i}"

            def done(err: Any, msg: Any, user: str = user) -> None:
                assert err is None, err
                delivered.append((name, user, msg.partition(), msg.offset()))

            p.produce(prefix + "payments", orjson.dumps(payment(f"{user}-pay", user)), user.encode(),
                      on_delivery=done)
        assert p.flush(30) == 0

    # librdkafka's default is consistent_random (CRC32), not Kafka's murmur2.
    await asyncio.to_thread(produce, "default", {})
    await asyncio.to_thread(produce, "murmur2", {"partitioner": "murmur2_random"})
    assert len(delivered) == 300
    misplaced = {(p, o) for n, u, p, o in delivered if p != kafka_partition(u.encode(), PARTITIONS)}
    assert misplaced and all(n == "default" for n, u, p, o in delivered if (p, o) in misplaced)
    placed = {f"{u}-pay" for n, u, p, o in delivered if (p, o) not in misplaced}

    def mine(rs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rs if str(r.get("event_id", "")).startswith("rdkafka-")]

    decisions = await client.read("risk-decisions", until=lambda rs: len(mine(rs)) >= len(placed), settle=1)
    distinct = {d["decision_id"]: d for d in mine(decisions)}.values()  # at-least-once: drop repeats
    assert Counter(d["event_id"] for d in distinct) == Counter(placed)
    topic = prefix + "payments"
    letters = await client.read(
        "dead-letters",
        until=lambda rs: sum(1 for r in rs if (r["partition"], r["offset"]) in misplaced
                             and r["source_topic"] == topic) >= len(misplaced),
    )
    ours = [r for r in letters if r["source_topic"] == topic and (r["partition"], r["offset"]) in misplaced]
    assert {(r["partition"], r["offset"]) for r in ours} == misplaced
    assert all("partitioner=murmur2_random" in r["error"] for r in ours)


async def test_worker_refuses_topics_partitioned_otherwise(bootstrap: str) -> None:
    prefix = unique("layout") + "."
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(prefix + "orders", 2, 1)])
    finally:
        await admin.close()
    # What `streamrisk worker` runs before it joins its group (the CLI prints the error as one line).
    settings = Settings(bootstrap=bootstrap, topic_prefix=prefix, app_id=unique("app"))
    with pytest.raises(TopicLayoutError) as refused:
        await ensure_topics(settings, timeout_s=30)
    assert str(refused.value).startswith(f"topic '{prefix}orders' has 2 partitions, this worker needs 4")
