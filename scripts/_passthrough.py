"""The latency floor for scripts/bench_pipeline.py: the least a Python consume -> produce service does.

A plain aiokafka loop with the worker's client settings (fetch_min_bytes 1, acks=all, linger 1 ms) that
decodes each payment and sends a small decision-like record, {"event_id", "decided_at"}, to the output
topic under the same key. No state, no rules, no offsets committed. What it adds to produce -> decision
latency on this machine (broker round trips, the scheduler, the load generator sharing the cores) is
what any worker would pay before doing any work.

Run: python _passthrough.py BOOTSTRAP IN_TOPIC OUT_TOPIC
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def main(bootstrap: str, in_topic: str, out_topic: str) -> None:
    consumer = AIOKafkaConsumer(in_topic, bootstrap_servers=bootstrap, group_id=f"floor-{in_topic}",
                                auto_offset_reset="earliest", fetch_max_wait_ms=100, fetch_min_bytes=1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1)
    await consumer.start()
    await producer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for r in records:
                    eid = orjson.loads(r.value)["event_id"]
                    out = orjson.dumps({"event_id": eid, "decided_at": int(time.time() * 1000)})
                    await producer.send(out_topic, out, key=r.key)
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
