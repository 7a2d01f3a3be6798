"""Input with holes in its offsets, from clients we do not use ourselves: payments from a librdkafka
transactional producer (commits and aborts interleaved), and a committed offset below the log start.
Every committed payment is decided once, no aborted one ever, nothing is read twice, and the group's
committed offsets reach the end of the partitions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from streamrisk.broker import EmbeddedBroker
from tests.harness import Client, WorkerProcess, get_json, group_of, payment, unique, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def produce_transactions(bootstrap: str, topic: str, rounds: int) -> tuple[list[str], list[str]]:
    """Rounds of 5 payments each, every third round aborted; returns (committed ids, aborted ids)."""
    from confluent_kafka import Producer

    producer = Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": unique("upstream"),
        "partitioner": "murmur2_random",  # Kafka's default partitioner, as the contract requires
    })
    producer.init_transactions(30)
    committed: list[str] = []
    aborted: list[str] = []
    for r in range(rounds):
        producer.begin_transaction()
        ids = [f"tx{r}-{i}" for i in range(5)]
        for i, eid in enumerate(ids):
            user = f"tx-user-{i}"
            producer.produce(topic, orjson.dumps(payment(eid, user)), key=user.encode())
        if r % 3 == 2:
            producer.abort_transaction(30)
            aborted += ids
        else:
            producer.commit_transaction(30)
            committed += ids
    producer.flush(30)
    return committed, aborted


async def group_reached_end(bootstrap: str, group: str, topic: str) -> object:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = await consumer.end_offsets(tps)
        behind = {
            tp.partition: (committed[tp].offset if tp in committed else None, end)
            for tp, end in ends.items()
            if end > 0 and (tp not in committed or committed[tp].offset != end)
        }
        return True if tps and not behind else f"(committed, end) by partition: {behind}"
    finally:
        await consumer.stop()
        await admin.close()


async def test_transactional_upstream_committed_decided_once_aborted_never(
    session_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    if not session_broker.supports("transactions"):
        pytest.skip("the embedded broker of this run has no transactions (they run on Apache Kafka)")
    bootstrap, prefix, app_id = session_broker.bootstrap, unique("txin") + ".", unique("app")
    worker = WorkerProcess(bootstrap, prefix, app_id, tmp_path / "w").start()
    try:
        async with Client(bootstrap, prefix) as client:
            await client.send("payments", "warm", payment("warm-up", "warm"))
            await client.read("risk-decisions", until=lambda rs: len(rs) >= 1, timeout=90)
            committed, aborted = await asyncio.to_thread(
                produce_transactions, bootstrap, prefix + "payments", 12
            )
            decisions = await client.read(
                "risk-decisions",
                until=lambda rs: {r["event_id"] for r in rs} >= set(committed),
                timeout=60,
                settle=2.0,
            )
        counts: dict[str, int] = {}
        for d in decisions:
            counts[d["event_id"]] = counts.get(d["event_id"], 0) + 1
        assert all(counts[eid] == 1 for eid in committed), counts
        assert not set(counts) & set(aborted)
        await wait_for(
            lambda: group_reached_end(bootstrap, group_of(prefix, app_id), prefix + "payments"), 30,
            "committed offsets at the end of every payments partition, past the transaction markers",
        )
        async with aiohttp.ClientSession() as http:
            stats = await get_json(http, worker, "/stats")
        assert stats is not None and stats["records_read_again"] == 0
    finally:
        worker.stop()


async def test_a_committed_offset_below_the_log_start_reads_the_rest_once(
    session_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    if not session_broker.supports("delete_records"):
        pytest.skip("the embedded broker of this run cannot delete records (runs on Apache Kafka)")
    bootstrap, prefix, app_id = session_broker.bootstrap, unique("logstart") + ".", unique("app")
    topic = prefix + "payments"
    worker = WorkerProcess(bootstrap, prefix, app_id, tmp_path / "w").start()
    try:
        async with Client(bootstrap, prefix) as client:
            await client.send("payments", "u1", payment("before-1", "u1"))
            await client.read("risk-decisions", until=lambda rs: len(rs) >= 1, timeout=90)
            group = group_of(prefix, app_id)
            await wait_for(lambda: group_reached_end(bootstrap, group, topic), 30, "first commit")
            worker.stop()
            # While no worker runs: more payments, then the log start moves past the committed offset.
            early = [f"gone-{i}" for i in range(5)]
            late = [f"kept-{i}" for i in range(5)]
            for eid in early:
                await client.send("payments", "u1", payment(eid, "u1"))
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
            await consumer.start()
            await consumer._client.force_metadata_update()
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            ((tp, end),) = [(tp, e) for tp, e in (await consumer.end_offsets(parts)).items() if e > 0]
            await consumer.stop()
            admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
            await admin.start()
            await admin.delete_records({tp: RecordsToDelete(before_offset=end)})
            await admin.close()
            for eid in late:
                await client.send("payments", "u1", payment(eid, "u1"))

            worker = WorkerProcess(bootstrap, prefix, app_id, tmp_path / "w2").start()
            decisions = await client.read(
                "risk-decisions", until=lambda rs: {r["event_id"] for r in rs} >= set(late),
                timeout=90, settle=2.0,
            )
        async with aiohttp.ClientSession() as http:
            stats = await get_json(http, worker, "/stats")
        decided = [d["event_id"] for d in decisions]
        assert not set(decided) & set(early)  # deleted before any worker read them
        assert all(decided.count(eid) == 1 for eid in late), (decisions, stats)
        await wait_for(lambda: group_reached_end(bootstrap, group, topic), 30, "commit past the gap")
    finally:
        worker.stop()
