"""What bringing the merchant side to a payment costs, measured on the embedded broker and a worker.

A payment is keyed by user, its merchant's state by merchant. The worker publishes merchant summaries
that every worker reads (chosen), instead of a repartition hop that would move each payment to its
merchant's worker before deciding. Probes, each at a merchant never seen before, one at a time:

- an **order**: order -> worker -> summary read back               = one hop (+ the summary read)
- a **payment**: payment -> worker -> forwarded, keyed by merchant (the repartition hop) -> worker
  -> summary read back                                             = the same plus a repartition hop
- the payment's **decision**: payment -> worker -> decision read back

The difference between the payment and order summary lags is what a repartition hop costs; a
repartition design would add it to every decision. Run: .venv/bin/python scripts/bench_merchant_side.py
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
from _bench import report  # scripts/_bench.py
from aiokafka import AIOKafkaConsumer

from streamrisk.broker import start_broker
from streamrisk.core.topic_names import merchant_risk_topic
from streamrisk.demo import Stack
from streamrisk.loadgen.patterns import order, payment
from streamrisk.loadgen.produce import make_producer
from streamrisk.settings import Settings


async def probe(bootstrap: str, n: int) -> dict[str, list[float]]:
    summaries, decisions = merchant_risk_topic(Settings()), "risk-decisions"
    consumer = AIOKafkaConsumer(summaries, decisions, bootstrap_servers=bootstrap,
                                fetch_max_wait_ms=5, auto_offset_reset="latest")
    producer = make_producer(bootstrap)
    await consumer.start()
    await producer.start()
    seen: dict[str, float] = {}  # merchant id / payment id -> wall time read

    async def read() -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=20)
            now = time.perf_counter()
            for tp, records in batch.items():
                for r in records:
                    key = r.key.decode() if tp.topic == summaries else orjson.loads(r.value)["event_id"]
                    seen.setdefault(key, now)

    reader = asyncio.create_task(read())
    run = uuid.uuid4().hex[:6]
    out: dict[str, list[float]] = {"order_summary": [], "payment_summary": [], "decision": []}
    try:
        warm = f"warm-{run}"
        first = payment(warm, "u", "m", 1.0, int(time.time() * 1000))[2]
        await producer.send_and_wait("payments", orjson.dumps(first), key=b"u")
        deadline = time.monotonic() + 60
        while warm not in seen:
            if time.monotonic() > deadline:
                raise TimeoutError("the worker made no decision in 60 s")
            await asyncio.sleep(0.05)
        for i in range(n):
            kind = "order" if i % 2 == 0 else "payment"
            merchant, eid, user = f"bm-{run}-{i}", f"bp-{run}-{i}", f"bu-{run}-{i}"
            ts = int(time.time() * 1000)
            topic, key, value = (order(f"{eid}:placed", merchant, user, 10.0, ts) if kind == "order"
                                 else payment(eid, user, merchant, 10.0, ts))
            sent = time.perf_counter()
            await producer.send_and_wait(topic, orjson.dumps(value), key=key.encode())
            wanted = [merchant] + ([eid] if kind == "payment" else [])
            while any(w not in seen for w in wanted):
                if time.perf_counter() - sent > 10:
                    raise TimeoutError(f"probe {i} ({kind}) not answered in 10 s")
                await asyncio.sleep(0.001)
            out[f"{kind}_summary"].append((seen[merchant] - sent) * 1000)
            if kind == "payment":
                out["decision"].append((seen[eid] - sent) * 1000)
            await asyncio.sleep(0.02)
    finally:
        reader.cancel()
        await producer.stop()
        await consumer.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--probes", type=int, default=200)
    args = ap.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="streamrisk-bench-") as tmp, start_broker("tansu") as broker:
        stack = Stack(broker.bootstrap, Settings(bootstrap=broker.bootstrap))
        stack.start_worker(Path(tmp))
        try:
            lat = asyncio.run(probe(broker.bootstrap, args.probes))
        finally:
            stack.stop()
    p50 = {k: float(np.percentile(v, 50)) for k, v in lat.items()}
    p99 = {k: float(np.percentile(v, 99)) for k, v in lat.items()}
    print(f"{args.probes} probes, one at a time, Tansu + one worker (ms)")
    for k in ("decision", "order_summary", "payment_summary"):
        print(f"  {k:<18} p50 {p50[k]:6.1f}  p99 {p99[k]:6.1f}  (n={len(lat[k])})")
    hop = p50["payment_summary"] - p50["order_summary"]
    print(f"  repartition hop (payment summary - order summary, p50): {hop:.1f} ms")
    ratio = (p50["decision"] + hop) / p50["decision"]
    print(f"  decision with a repartition hop / decision now (p50): {ratio:.2f}")
    print("  merchant summaries add 0 ms to the decision path; the merchant side lags by the summary lag")
    return report([], started)


if __name__ == "__main__":
    raise SystemExit(main())
