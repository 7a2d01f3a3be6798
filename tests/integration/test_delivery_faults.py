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

BACKLOG = 20_000  # payments: seconds of the worker's work, most of it fetched before the broker freezes


async def test_a_broker_stall_longer_than_every_retry_stops_the_worker_and_loses_no_decision(
    broker_kind: str, tmp_path: Path
) -> None:
    # A broker of its own: this test freezes it.
    with start_broker(broker_kind) as broker:
        prefix, app_id = unique("faults") + ".", unique("app")
        # The at-least-once path: records re-sent, then the worker stops. (Under exactly-once a stall
        # aborts the transaction, which is undone in place: test_exactly_once.py's broker kills.)
        fragile = {"STREAMRISK_DELIVERY_TIMEOUT_S": "1", "STREAMRISK_DELIVERY_ATTEMPTS": "2",
                   "STREAMRISK_PROCESSING_GUARANTEE": "at_least_once"}
        first = WorkerProcess(broker.bootstrap, prefix, app_id, tmp_path / "a", **fragile).start()
        second = None
        try:
            async with Client(broker.bootstrap, prefix) as client:
                sent = ["warm-up"]
                await client.send("payments", "u0", payment("warm-up", "u0"))
                await client.read("risk-decisions", until=lambda rs: len(rs) >= 1, timeout=90)

                # A backlog the worker is still working through when the broker freezes, so that
                # records it produced are waiting for their acknowledgement whatever the timing: it
                # is written while the worker is paused, and read in the worker's first fetch after.
                assert client.producer is not None
                os.kill(first.proc.pid, signal.SIGSTOP)
                try:
                    for i in range(BACKLOG):
                        eid = f"pay-{i}"
                        sent.append(eid)
                        value = orjson.dumps(payment(eid, f"u{i % 500}", amount=10.0 + i % 7))
                        await client.producer.send(prefix + "payments", value, key=f"u{i % 500}".encode())
                    await client.producer.flush()
                finally:
                    os.kill(first.proc.pid, signal.SIGCONT)

                async with aiohttp.ClientSession() as http:
                    async def deciding() -> object:
                        stats = await get_json(http, first, "/stats")
                        # Past the warm-up's 2 records (its payment and merchant event): the
                        # backlog is being decided, most of it still to do.
                        return (stats is not None and stats["records"] > BACKLOG // 20) or stats

                    await wait_for(deciding, 60, "the worker deciding the backlog")
                os.kill(broker.pid, signal.SIGSTOP)
                await asyncio.sleep(10)  # longer than 2 attempts of 1 s each (and reconnects)
                os.kill(broker.pid, signal.SIGCONT)

                async def stopped() -> object:
                    return first.proc.poll() is not None or "still running"

                await wait_for(stopped, 60, "the worker stopping after its last delivery attempt")
                assert first.proc.poll() != 0
                log = (first.log_path).read_text()
                # Records already handed over fail their 2 attempts; one that finds the producer full
                # fails on the spot. Either way the worker says why it stops.
                assert "stopping so the input is read again" in log, first.log()

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
