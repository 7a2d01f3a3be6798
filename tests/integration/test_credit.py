"""Credit on a running worker: the worked example of docs/credit.md read back from both adjustment topics and
the HTTP API, and no second adjustment after a SIGKILL and restart.

    worked example ── one record at a time (each waits until the worker has applied it, since the
                      story spans topics) ── adjustments on both topics == the docs', API agrees
    kill test      ── stories, worker A ── SIGKILL ── A' (same app id) ── more stories
                      adjustments de-duplicated by id == what one process computes from the same input
"""

from __future__ import annotations

import aiohttp
import pytest

from streamrisk.loadgen import patterns as pt
from tests.credit.test_worked_example import merchant_story, user_story
from tests.harness import Client, WorkerProcess, get_json, now_ms, unique, wait_for
from tests.pipeline import Pipeline

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


async def send_applied(client: Client, http: aiohttp.ClientSession, worker: WorkerProcess,
                       records: list[pt.Record], path: str) -> None:
    """Send each record once the previous one is applied (the entity's clock has reached it)."""
    for topic, key, value in records:
        await client.send(topic, key, value)

        async def applied(ts: int = value["ts"]) -> bool | object:
            body = await get_json(http, worker, path)
            return (body is not None and body["latest_ts"] >= ts) or body

        await wait_for(applied, 30, f"{topic} {value['event_id']} applied")


async def test_worked_example_on_the_broker(client: Client, worker: WorkerProcess) -> None:
    async with aiohttp.ClientSession() as http:
        await send_applied(client, http, worker, user_story(), "/users/u-ex")
        await send_applied(client, http, worker, merchant_story(), "/merchants/m-ex")
        limits = await client.read("credit-limit-adjustments", until=lambda rs: len(rs) >= 2, settle=1.0)
        lines = await client.read("credit-line-adjustments", until=lambda rs: len(rs) >= 5, settle=1.0)
        user = await get_json(http, worker, "/users/u-ex")
        merchant = await get_json(http, worker, "/merchants/m-ex")
    assert [(a["previous_limit"], a["new_limit"], a["reasons"]) for a in limits] == [
        (2000.0, 2400.0, ["ON_TIME_REPAYMENTS"]), (2400.0, 1920.0, ["REPAYMENT_PAST_DUE"])]
    assert [a["new_line"] for a in lines] == [800.0, 2400.0, 1920.0, 1680.0, 420.0]
    assert lines[-1]["reasons"] == ["LATE_REPAYMENTS", "REFUND_RATE", "SALES_DECLINE"]
    got = (user["credit_limit"], user["credit_outstanding"], user["credit_available"])
    assert got == (1920.0, 200.0, 1720.0)
    assert [a["new_limit"] for a in user["credit_adjustments"]] == [1920.0, 2400.0]  # newest first
    assert (merchant["credit_line"], merchant["receivables"]) == (420.0, 2000.0)
    assert merchant["features"]["receivables"] == 2000.0


def stories(tag: str, now: int) -> list[pt.Record]:
    """Single-topic stories, so the worker applies each entity's events in the order sent, whatever
    it reads first after a restart: velocity bursts (a freeze each) and merchants' sales (lines)."""
    records = [r for i in range(2) for r in pt.velocity_burst(f"{tag}-u{i}", now)]
    records += pt.surge_then_collapse(f"{tag}-m", now)
    return records


async def test_no_duplicate_adjustment_after_sigkill_and_restart(bootstrap: str, tmp_path) -> None:
    prefix = unique("credkill") + "."
    app_id = unique("app")
    a = WorkerProcess(bootstrap, prefix, app_id, tmp_path / "a").start()
    workers = [a]
    first, second = stories("one", now_ms()), stories("two", now_ms())
    expected = Pipeline()
    expected.run(first + second, now_ms() + 60_000)
    want = {x["adjustment_id"]: x for t in ("credit-limit-adjustments", "credit-line-adjustments")
            for x in expected.records(t)}
    try:
        async with Client(bootstrap, prefix) as client:
            for topic, key, value in first:
                await client.send(topic, key, value)
            # Kill while the worker is still producing the first stories' adjustments.
            await client.read("credit-line-adjustments", until=lambda rs: len(rs) >= 3, timeout=60)
            a.kill()
            a2 = WorkerProcess(bootstrap, prefix, app_id, tmp_path / "a2").start()
            workers = [a2]
            for topic, key, value in second:
                await client.send(topic, key, value)
            got: dict[str, dict] = {}
            for topic in ("credit-limit-adjustments", "credit-line-adjustments"):
                mine = {k for k in want if want[k] in expected.records(topic)}
                records = await client.read(
                    topic, until=lambda rs, mine=mine: mine <= {r["adjustment_id"] for r in rs},
                    timeout=90, settle=2.0)
                for r in records:
                    assert got.setdefault(r["adjustment_id"], r) == r, "one id, two different adjustments"
    finally:
        for w in workers:
            w.stop()
    assert set(got) == set(want)  # none missing, and no second adjustment under another id
