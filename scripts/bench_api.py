"""What forwarding a state query to the key's owner adds, on the embedded broker with two workers.

Every worker answers for every key: a worker that does not own the key's partition forwards the request
to the one that does (src/streamrisk/web/owner.py). For the same users, in alternating order, this asks
the owner directly (baseline) and the other worker (forwarded), over keep-alive connections, and prints
both latencies and their ratio. Run: .venv/bin/python scripts/bench_api.py [--users 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import numpy as np
import orjson

from streamrisk.broker import start_broker, worker_env_for
from streamrisk.loadgen.patterns import payment
from streamrisk.loadgen.produce import make_producer
from streamrisk.procs import free_port, log_tail, spawn, terminate

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def start_worker(bootstrap: str, work: Path, app_id: str, name: str):  # type: ignore[no-untyped-def]
    port = free_port()
    env = {**os.environ, "STREAMRISK_BOOTSTRAP": bootstrap, "STREAMRISK_APP_ID": app_id,
           "STREAMRISK_DATA_DIR": str(work / name), "STREAMRISK_WEB_PORT": str(port),
           "STREAMRISK_API_TOKEN": TOKEN, "STREAMRISK_PEER_TOKEN": "bench-peer-token",
           "STREAMRISK_SESSION_TIMEOUT_S": "6",
           "STREAMRISK_HEARTBEAT_INTERVAL_S": "0.5", "STREAMRISK_LOG_LEVEL": "warning",
           **worker_env_for(bootstrap)}
    log = work / f"{name}.log"
    return spawn([sys.executable, "-m", "streamrisk", "worker"], log_path=log, env=env), port, log


async def all_ready(session: aiohttp.ClientSession, ports: list[int]) -> bool:
    for port in ports:
        try:
            async with session.get(f"http://127.0.0.1:{port}/ready") as r:
                if r.status != 200:
                    return False
        except aiohttp.ClientConnectionError:
            return False
    return True


async def measure(bootstrap: str, ports: list[int], users: int, rounds: int) -> dict[str, list[float]]:
    ids = [f"bench-{uuid.uuid4().hex[:6]}-{i}" for i in range(users)]
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        for i, u in enumerate(ids):
            topic, key, value = payment(f"{u}-p", u, "m-bench", 20.0 + i, int(time.time() * 1000))
            await producer.send_and_wait(topic, orjson.dumps(value), key=key.encode())
    finally:
        await producer.stop()
    out: dict[str, list[float]] = {"owner": [], "forwarded": []}
    async with aiohttp.ClientSession(headers=AUTH) as session:
        owner: dict[str, int] = {}
        deadline = time.monotonic() + 90
        while not await all_ready(session, ports):
            if time.monotonic() > deadline:
                raise TimeoutError("the workers did not get ready")
            await asyncio.sleep(0.5)
        while len(owner) < len(ids):
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(owner)} of {len(ids)} users answered")
            for u in ids:
                if u in owner:
                    continue
                async with session.get(f"http://127.0.0.1:{ports[0]}/users/{u}") as r:
                    if r.status == 200:
                        served = (await r.json())["served_by"]
                        owner[u] = int(served.rsplit(":", 1)[1])
            await asyncio.sleep(0.2)
        for _ in range(rounds):
            for u in ids:
                for kind in ("owner", "forwarded"):
                    port = owner[u] if kind == "owner" else next(p for p in ports if p != owner[u])
                    t = time.perf_counter()
                    async with session.get(f"http://127.0.0.1:{port}/users/{u}") as r:
                        await r.read()
                        assert r.status == 200, (kind, r.status)
                    out[kind].append((time.perf_counter() - t) * 1000)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--kafka", action="store_true", help="Apache Kafka instead of Tansu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="streamrisk-bench-api-") as tmp, \
            start_broker("kafka" if args.kafka else "tansu", data_dir=Path(tmp) / "broker") as broker:
        app_id = f"bench-api-{uuid.uuid4().hex[:6]}"
        workers = [start_worker(broker.bootstrap, Path(tmp), app_id, n) for n in ("a", "b")]
        try:
            ports = [port for _, port, _ in workers]
            result = asyncio.run(measure(broker.bootstrap, ports, args.users, args.rounds))
        except Exception:
            for _, _, log in workers:
                print(log_tail(log, 30), file=sys.stderr)
            raise
        finally:
            for proc, _, _ in workers:
                terminate(proc, grace=10)
    own, fwd = np.array(result["owner"]), np.array(result["forwarded"])
    print(f"GET /users/{{id}}, {len(own)} requests each, two workers on one machine")
    for label, a in (("asked the owner (baseline)", own), ("asked the other worker (forwarded)", fwd)):
        print(f"  {label:36s} p50 {np.percentile(a, 50):6.2f} ms   p99 {np.percentile(a, 99):6.2f} ms")
    p50o, p50f = np.percentile(own, 50), np.percentile(fwd, 50)
    print(f"  forwarding adds {p50f - p50o:.2f} ms at p50: {p50f / p50o:.2f}x the baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
