"""A worker whose merchant view is bounded (STREAMRISK_MERCHANT_CACHE_SIZE=2, the rest in RocksDB under
its data directory) decides payments at a dozen merchants as a whole view in memory does.

    orders at 12 merchants (4 with a refund spike, which the score reads) ── summaries published and
    read back ── a payment at each merchant, twice over ── each decision's action, score and reasons
    == those of a processor that held every summary (run_local over the same records)
"""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from streamrisk.core.processor import Processor
from streamrisk.core.records import Message
from streamrisk.core.topic_names import merchant_risk_topic
from streamrisk.loadgen import patterns as pt
from streamrisk.settings import Settings
from streamrisk.state.kv import DictKV
from tests.harness import Client, WorkerProcess, end_offsets, get_json, now_ms, unique, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def expected(records: list, now: int) -> dict[str, tuple]:
    """Each payment's (action, score, reasons) from one processor holding every summary at once."""
    proc = Processor(Settings(partitions=1), DictKV())
    msgs = [Message(t, 0, i, k.encode(), orjson.dumps(v)) for i, (t, k, v) in enumerate(records)]
    out = {}
    for i in range(len(msgs)):  # one at a time: every summary applied before the next record
        for o in proc.run_local(msgs[i:i + 1], now_ms=now):
            if o.topic == "risk-decisions":
                d = o.value if isinstance(o.value, dict) else orjson.loads(o.value)  # type: ignore[arg-type]
                out[d["event_id"]] = (d["action"], d["score"], d["reasons"])
    return out


async def test_a_worker_with_a_bounded_merchant_view_decides_as_one_holding_every_summary(
    bootstrap: str, tmp_path
) -> None:
    tag = unique("mcache")
    prefix, app_id = tag + ".", unique("app")
    worker = WorkerProcess(bootstrap, prefix, app_id, tmp_path, STREAMRISK_MERCHANT_CACHE_SIZE="2").start()
    now = now_ms()
    merchants = [f"{tag}-m{i}" for i in range(12)]
    before = now - 60_000
    orders = [r for i, m in enumerate(merchants)
              for r in (pt.refund_spike(m, before) if i % 3 == 0 else pt.normal_merchant(m, before))]
    # One each: a payment changes its merchant's summary, which a later payment there would read.
    payments = [pt.payment(f"{tag}-p{i}", f"{tag}-u{i}", m, 120.0, now - 30_000)
                for i, m in enumerate(merchants)]
    try:
        async with Client(bootstrap, prefix) as client, aiohttp.ClientSession() as http:
            await wait_for(lambda: _ready(http, worker), 60, "the worker ready")
            for rec in orders:
                await client.send(*rec)
            summaries = merchant_risk_topic(Settings(topic_prefix=prefix, app_id=app_id))
            last_ts = {m: max(v["ts"] for t, k, v in orders if k == m) for m in merchants}

            published = 0

            async def summaries_final() -> bool | object:
                # Every merchant's newest summary is as of its newest order ([schema, as_of, ...]).
                nonlocal published
                records = await _records(bootstrap, summaries)
                published = len(records)  # not the end offsets: transaction markers take offsets too
                as_of = {k: orjson.loads(v)[1] for k, v in records}
                return as_of == last_ts or as_of

            await wait_for(summaries_final, 60, "every merchant's final summary published")

            async def read_back() -> bool | object:
                stats = await get_json(http, worker, "/stats")
                return (stats is not None and stats["summaries_read"] >= published) or stats
            await wait_for(read_back, 30, f"the worker read all {published} summaries")

            for rec in payments:
                await client.send(*rec)
            decisions = await client.read(
                "risk-decisions", until=lambda rs: len({r["event_id"] for r in rs}) >= len(payments),
                timeout=60)
            stats = await get_json(http, worker, "/stats")
        want = expected(orders + payments, now)
        got = {d["event_id"]: (d["action"], d["score"], d["reasons"]) for d in decisions}
        assert got == {eid: want[eid] for eid in got}
        assert len({score for _, score, _ in got.values()}) > 1  # the merchants' features moved the score
        assert stats is not None and stats["merchant_cache"]["cached"] <= 2
        assert stats["merchant_cache"]["misses"] >= len(merchants)  # served from the store
        assert stats["merchants_in_view"] == len(merchants)
        assert any(tmp_path.glob("*/merchant-summaries-*/*")), "no store under the data directory"
    finally:
        worker.stop()


async def _ready(http: aiohttp.ClientSession, worker: WorkerProcess) -> bool:
    return await get_json(http, worker, "/ready") is not None


async def _records(bootstrap: str, topic: str) -> list[tuple[str, bytes]]:
    """(key, value) of every record on `topic` up to its end now, in offset order per partition."""
    ends = {tp: end for tp, end in (await end_offsets(bootstrap, [topic])).items() if end > 0}
    out: list[tuple[str, bytes]] = []
    if not ends:
        return out
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=10)
    await consumer.start()
    try:
        consumer.assign(list(ends))
        await consumer.seek_to_beginning(*ends)
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                out += [(r.key.decode(), r.value) for r in records if r.value is not None]
    finally:
        await consumer.stop()
    return out
