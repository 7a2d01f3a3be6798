"""Broker failover on the embedded 3-node Kafka cluster, without workers: how long acks=all writes to the
partitions a SIGKILLed leader led wait before an in-sync follower takes over.

Starts `start_broker("kafka", brokers=3)` (its start-up time is the first figure), produces a small record
every 10 ms to each partition of a topic with 3 replicas and min.insync.replicas 2, SIGKILLs the node leading
partition 0, and reports the longest produce -> ack latency, when the controller fenced the node, and when
the cluster listed it again (restarted by BrokerCluster.tend). `--session-timeout-ms` overrides the brokers'
broker.session.timeout.ms (default 9000, Kafka's), which bounds the gap. docs/scale.md has the figures.

    .venv/bin/python scripts/bench_failover.py [--session-timeout-ms 9000] [--after-s 25]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamrisk.broker import BrokerCluster, start_broker
from streamrisk.broker import kafka as kafka_mod

TOPIC = "failover"
PARTITIONS = 4


async def leaders(bootstrap: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [topic] = await admin.describe_topics([TOPIC])
        return {p["partition"]: p["leader"] for p in topic["partitions"]}
    finally:
        await admin.close()


async def run(cluster: BrokerCluster, after_s: float) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    await admin.start()
    try:
        config = {"min.insync.replicas": "2"}
        await admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3, topic_configs=config)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=cluster.bootstrap, acks="all", enable_idempotence=True,
                                request_timeout_ms=60_000, linger_ms=0)
    await producer.start()
    acks: list[tuple[int, float, float]] = []  # (partition, sent, acked)
    stop = asyncio.Event()

    async def one(partition: int) -> None:
        sent = time.monotonic()
        await producer.send_and_wait(TOPIC, b"x" * 100, partition=partition)
        acks.append((partition, sent, time.monotonic()))

    async def traffic() -> None:
        pending: set[asyncio.Task] = set()
        while not stop.is_set():
            for p in range(PARTITIONS):
                task = asyncio.create_task(one(p))
                pending.add(task)
                task.add_done_callback(pending.discard)
            await asyncio.sleep(0.01)
        await asyncio.gather(*pending)

    sender = asyncio.create_task(traffic())
    await asyncio.sleep(5)
    led = await leaders(cluster.bootstrap)
    victim = led[0]
    moved = sorted(p for p, n in led.items() if n == victim)
    killed_at = time.monotonic()
    os.killpg(cluster.node(victim).pid, signal.SIGKILL)
    print(f"SIGKILL node {victim}, leader of partitions {moved}")
    fenced_at = back_at = None
    while time.monotonic() - killed_at < after_s:
        for line in cluster.tend():
            print(f"  {time.monotonic() - killed_at:5.1f} s  {line}")
        listed = await asyncio.to_thread(cluster.listed)
        if fenced_at is None and listed is not None and victim not in listed:
            fenced_at = time.monotonic()
        if fenced_at is not None and back_at is None and listed == set(cluster.node_ids):
            back_at = time.monotonic()
            break
        await asyncio.sleep(0.2)
    stop.set()
    await sender
    await producer.stop()
    before = [a - s for _, s, a in acks if a < killed_at]
    around = [(p, s, a) for p, s, a in acks if a >= killed_at]
    worst = max((a - s for _, s, a in around), default=float("nan"))
    resumed = min((a for p, s, a in around if p in moved and s >= killed_at), default=float("nan"))
    print(f"produce -> ack before the kill: max {max(before) * 1000:.0f} ms over {len(before)} records")
    print(f"longest produce -> ack across the kill: {worst:.1f} s")
    print(f"first ack on a moved partition of a record sent after the kill: {resumed - killed_at:.1f} s")
    fenced_s, back_s = (fenced_at or float("nan")) - killed_at, (back_at or float("nan")) - killed_at
    print(f"node fenced (not listed) after {fenced_s:.1f} s; listed again after {back_s:.1f} s "
          "(restarted once fenced)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_timeout = int(kafka_mod.CLUSTER_PROPS["broker.session.timeout.ms"])
    ap.add_argument("--session-timeout-ms", type=int, default=default_timeout)
    ap.add_argument("--after-s", type=float, default=40.0, help="longest to wait for the node to come back")
    args = ap.parse_args()
    kafka_mod.CLUSTER_PROPS["broker.session.timeout.ms"] = str(args.session_timeout_ms)
    kafka_mod.CLUSTER_PROPS["broker.heartbeat.interval.ms"] = str(max(100, args.session_timeout_ms // 4))
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}; "
          f"broker.session.timeout.ms {args.session_timeout_ms}")
    started = time.monotonic()
    cluster = start_broker("kafka", brokers=3)
    assert isinstance(cluster, BrokerCluster)
    print(f"3-node cluster ready in {time.monotonic() - started:.1f} s")
    try:
        asyncio.run(run(cluster, args.after_s))
    finally:
        cluster.stop()
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
