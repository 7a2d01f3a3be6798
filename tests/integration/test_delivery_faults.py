"""Delivery failures on a real broker: a worker whose records cannot be delivered after every retry
stops loudly, and the input it had not committed is read again, so no payment is left undecided."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import orjson
import pytest

from streamrisk.broker import start_broker
from tests.harness import Client, WorkerProcess, get_json, payment, unique, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


async def test_a_broker_stall_longer_than_every_retry_stops_the_worker_and_loses_no_decision(
    broker_kind: str, tmp_path: Path
) -> None:
    # A broker of its own: this test freezes it.
    with start_broker(broker_kind) as broker:
        prefix, app_id = unique("faults") + ".", unique("app")
        fragile = {"STREAMRISK_DELIVERY_TIMEOUT_S": "1", "STREAMRISK_DELIVERY_ATTEMPTS": "2"}
        first = WorkerProcess(broker.bootstrap, prefix, app_id, tmp_path / "a", **fragile).start()
        second = None
        try:
            async with Client(broker.bootstrap, prefix) as client:
                sent = ["warm-up"]
                await client.send("payments", "u0", payment("warm-up", "u0"))
                await client.read("risk-decisions", until=lambda rs: len(rs) >= 1, timeout=90)

                assert client.producer is not None
                async def traffic() -> None:
                    for i in range(400):
                        eid = f"pay-{i}"
                        sent.append(eid)
                        value = orjson.dumps(payment(eid, f"u{i % 17}", amount=10.0 + i % 7))
                        await client.producer.send(prefix + "payments", value, key=f"u{i % 17}".encode())
                        await asyncio.sleep(0.01)

                flow = asyncio.create_task(traffic())
                await asyncio.sleep(1.5)  # the worker is deciding, its deliveries in flight
                os.kill(broker.pid, signal.SIGSTOP)
                await asyncio.sleep(10)  # longer than 2 attempts of 1 s each (and reconnects)
                os.kill(broker.pid, signal.SIGCONT)
                await flow

                async def stopped() -> object:
                    return first.proc.poll() is not None or "still running"

                await wait_for(stopped, 60, "the worker stopping after its last delivery attempt")
                assert first.proc.poll() != 0
                log = (first.log_path).read_text()
                assert "not delivered after 2 attempts" in log, first.log()

                second = WorkerProcess(broker.bootstrap, prefix, app_id, tmp_path / "b").start()
                try:
                    decisions = await client.read(
                        "risk-decisions",
                        until=lambda rs: {r["event_id"] for r in rs} >= set(sent),
                        timeout=120,
                    )
                except TimeoutError as exc:
                    async with aiohttp.ClientSession() as http:
                        stats = await get_json(http, second, "/stats")
                    raise AssertionError(f"restarted worker: {stats}; {second.log()}") from exc
            ids: dict[str, set[str]] = {}
            for d in decisions:
                ids.setdefault(d["event_id"], set()).add(d["decision_id"])
            assert set(ids) == set(sent)
            assert all(len(v) == 1 for v in ids.values()), "a repeated decision changed its id"
        finally:
            first.stop()
            if second is not None:
                second.stop()
