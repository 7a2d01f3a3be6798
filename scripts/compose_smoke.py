"""Smoke test of a running deployment: every worker ready, N payments sent, every one decided once.

What `scripts/compose-smoke` runs against docker-compose.yml's stack (Kafka for host tools on
localhost:29092-29094, workers on 127.0.0.1:6066-6068), and tests/integration/test_cluster.py against
the same topology started from `streamrisk` commands. Exit status 0 when every check holds, 1 otherwise.

    python scripts/compose_smoke.py --bootstrap localhost:29092 --worker http://127.0.0.1:6066 ...
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections import Counter

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamrisk.loadgen.produce import make_producer


async def wait_ready(workers: list[str], token: str | None, timeout: float) -> dict[str, float]:
    """Poll each worker's /ready until it answers 200; returns seconds until each was ready."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    start = time.monotonic()
    ready: dict[str, float] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5), headers=headers) as http:
        while len(ready) < len(workers):
            for url in workers:
                if url in ready:
                    continue
                try:
                    async with http.get(f"{url}/ready") as resp:
                        if resp.status == 200:
                            ready[url] = time.monotonic() - start
                except (aiohttp.ClientError, TimeoutError):
                    pass
            if time.monotonic() - start > timeout:
                missing = [u for u in workers if u not in ready]
                raise TimeoutError(f"not ready after {timeout:.0f} s: {', '.join(missing)}")
            await asyncio.sleep(0.5)
    return ready


async def send_payments(bootstrap: str, prefix: str, run: str, count: int, users: int) -> dict[str, float]:
    """`count` contract-valid payments, keyed by user; returns event_id -> send time (epoch s)."""
    producer = make_producer(bootstrap, enable_idempotence=True)
    await producer.start()
    sent: dict[str, float] = {}
    try:
        futures = []
        for i in range(count):
            user = f"{run}-u{i % users}"
            now = time.time()
            value = {"event_id": f"{run}-p{i}", "ts": int(now * 1000), "user_id": user,
                     "merchant_id": f"{run}-m{i % 7}", "amount": 10.0 + i % 50, "currency": "CNY",
                     "method": "credit_line" if i % 3 == 0 else "card", "device_id": f"{user}-d"}
            futures.append(await producer.send(prefix + "payments", orjson.dumps(value), key=user.encode()))
            sent[value["event_id"]] = now
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


async def read_decisions(
    bootstrap: str, prefix: str, wanted: set[str], timeout: float
) -> dict[str, list[float]]:
    """Decisions of the wanted payments as a read_committed reader sees them: event_id -> read times."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False, fetch_max_wait_ms=50)
    await consumer.start()
    seen: dict[str, list[float]] = {}
    try:
        topic = prefix + "risk-decisions"
        deadline = time.monotonic() + timeout
        parts = None
        while not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic)
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {topic} never appeared")
            await asyncio.sleep(0 if parts else 0.5)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        settle_until: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for records in batch.values():
                for r in records:
                    eid = orjson.loads(r.value).get("event_id")
                    if eid in wanted:
                        seen.setdefault(eid, []).append(now)
            if settle_until is None and wanted <= seen.keys():
                settle_until = time.monotonic() + 2.0  # a repeat would show up within this
            if settle_until is not None and time.monotonic() > settle_until:
                break
    finally:
        await consumer.stop()
    return seen


async def smoke(args: argparse.Namespace) -> int:
    run = f"smoke-{uuid.uuid4().hex[:8]}"
    ready = await wait_ready(args.worker, args.token, args.ready_timeout)
    print(f"ready: {', '.join(f'{u} after {s:.1f} s' for u, s in ready.items())}")
    sent = await send_payments(args.bootstrap, args.topic_prefix, run, args.payments, args.users)
    print(f"sent {len(sent)} payments ({run})")
    seen = await read_decisions(args.bootstrap, args.topic_prefix, set(sent), args.timeout)
    undecided = sorted(set(sent) - seen.keys())
    repeated = Counter({eid: len(at) for eid, at in seen.items() if len(at) > 1})
    latencies = sorted(at[0] - sent[eid] for eid, at in seen.items())
    if latencies:
        p50, worst = latencies[len(latencies) // 2], latencies[-1]
        print(f"decided {len(seen)} of {len(sent)}; produce -> decision p50 {p50 * 1000:.0f} ms, "
              f"max {worst * 1000:.0f} ms")
    ok = not undecided and not repeated
    if undecided:
        print(f"FAIL: {len(undecided)} payments undecided after {args.timeout:.0f} s: {undecided[:5]}")
    if repeated:
        print(f"FAIL: {len(repeated)} payments decided more than once (read_committed): "
              f"{repeated.most_common(5)}")
    print("smoke: OK" if ok else "smoke: FAILED")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default=os.environ.get("STREAMRISK_BOOTSTRAP", "localhost:29092"))
    ap.add_argument("--worker", action="append", required=True, help="a worker's base URL (repeat)")
    ap.add_argument("--token", default=os.environ.get("STREAMRISK_API_TOKEN"), help="the API's bearer token")
    ap.add_argument("--topic-prefix", default=os.environ.get("STREAMRISK_TOPIC_PREFIX", ""))
    ap.add_argument("--payments", type=int, default=500)
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--ready-timeout", type=float, default=180.0)
    ap.add_argument("--timeout", type=float, default=60.0, help="for every payment to be decided")
    args = ap.parse_args()
    try:
        return asyncio.run(smoke(args))
    except TimeoutError as exc:
        print(f"smoke: FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
