"""The analysts' loop on two workers of one group: payments decided `review` are listed by
`GET /reviews` on any worker (gathered from both, oldest first); `POST /reviews/{payment_id}` (bearer
token) resolves one through the control topic, applied by the user's owner: it leaves the queue, its audit
trail names the analyst, the analyst's freeze reaches the user's credit account; and a fresh worker that
recovers the state from the changelog alone lists the same queue and the same resolution."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.harness import Client, WorkerProcess, now_ms, payment, unique, wait_for
from tests.integration.test_web import CHROMIUM, _browser

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

TOKEN = "reviews-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PARTITIONS = 2
RULES = """\
version: reviews-test-1
params: {}
rules:
  - name: big
    when: "payment.amount > 30.0"
    action: review
    severity: low
    reason: BIG
score:
  bias: -6.0
  weights: {}
  review_at: 0.6
  decline_at: 0.9
"""


class Http:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def get(self, w: WorkerProcess, path: str) -> tuple[int, Any]:
        try:
            async with self.session.get(w.url(path), headers=AUTH) as r:
                return r.status, await r.json(content_type=None)
        except aiohttp.ClientConnectionError:
            return 0, None

    async def post(self, w: WorkerProcess, path: str, body: Any,
                   headers: dict | None = None) -> tuple[int, Any]:
        hdrs = AUTH if headers is None else headers
        async with self.session.post(w.url(path), json=body, headers=hdrs) as r:
            return r.status, await r.json(content_type=None)

    async def ready(self, workers: list[WorkerProcess]) -> object:
        for w in workers:
            status, body = await self.get(w, "/stats")
            if status != 200 or not body.get("ready") or not body.get("assigned_partitions"):
                return (w.url("/stats"), status)
        return True


@pytest.fixture
async def http() -> AsyncIterator[Http]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield Http(session)


async def test_review_queue_resolution_and_recovery(bootstrap: str, prefix: str, tmp_path: Path,
                                                    http: Http) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    app_id = unique("reviews")
    env = {"STREAMRISK_API_TOKEN": TOKEN, "STREAMRISK_PEER_TOKEN": "reviews-peer",
           "STREAMRISK_PARTITIONS": str(PARTITIONS), "STREAMRISK_RULES": str(rules)}
    workers = [WorkerProcess(bootstrap, prefix, app_id, tmp_path / f"w{i}", **env).start() for i in range(2)]
    try:
        await wait_for(lambda: http.ready(workers), 90, "both workers ready with partitions")
        t0 = now_ms() - 60_000
        users = [f"rv-u{i}" for i in range(6)]
        async with Client(bootstrap, prefix) as client:
            for i, user in enumerate(users):
                await client.send("payments", user, payment(f"rv-p{i}", user, amount=35.0, ts=t0 + i * 1000,
                                                            method="credit_line"))
            await client.send("payments", "rv-ok", payment("rv-ok-1", "rv-ok", amount=5.0, ts=t0))
            expected = [(u, f"rv-p{i}") for i, u in enumerate(users)]

            async def queue_is(w: WorkerProcess, want: list[tuple[str, str]]) -> object:
                status, body = await http.get(w, "/reviews")
                if status != 200 or not body["complete"]:
                    return status, body
                got = [(c["user_id"], c["payment_id"]) for c in body["reviews"]]
                return True if got == want and body["pending"] == len(want) else got

            for w in workers:  # each worker gathers both workers' queues
                await wait_for(lambda w=w: queue_is(w, expected), 60, f"queue on {w.url('')}")
            status, body = await http.get(workers[0], "/reviews")
            assert body["reviews"][0]["amount"] == 35.0 and body["reviews"][0]["reasons"] == ["BIG"]

            # Resolve a case owned by each worker, asking the other.
            target_user, target = users[1], "rv-p1"
            path = f"/reviews/{target}"
            resolution = {"user_id": target_user, "resolution": "fraud", "analyst": "alice",
                          "note": "card reported stolen", "action": "freeze"}
            status, body = await http.post(workers[0], path, resolution, headers={})
            assert status == 401, body
            status, body = await http.post(workers[0], path, {**resolution, "resolution": "maybe"})
            assert status == 400 and "resolution must be one of" in body["error"], body
            status, body = await http.post(workers[0], "/reviews/nope", resolution)
            assert status == 404, body
            status, body = await http.post(workers[0], path, resolution)
            assert status == 202, body
            control_id = body["control_id"]
            status, body = await http.post(workers[1], "/reviews/rv-p2",
                                           {"user_id": users[2], "resolution": "approve", "analyst": "bob",
                                            "note": "known customer"})
            assert status == 202, body
            remaining = [e for e in expected if e[1] not in (target, "rv-p2")]
            for w in workers:
                await wait_for(lambda w=w: queue_is(w, remaining), 30, "resolved cases leave the queue")

            async def resolved(w: WorkerProcess) -> object:
                status, body = await http.get(w, f"{path}?user_id={target_user}")
                if status != 200 or body["status"] != "fraud":
                    return status, body
                [entry] = body["audit"]
                assert (entry["analyst"], entry["note"], entry["action"], entry["control_id"]) == (
                    "alice", "card reported stolen", "freeze", control_id)
                status, user = await http.get(w, f"/users/{target_user}")
                return True if user["credit_status"] == "frozen" and user["credit_available"] == 0 else user

            for w in workers:
                await wait_for(lambda w=w: resolved(w), 30, "the resolution, its audit trail and the freeze")
            adjustments = await client.read(
                "credit-limit-adjustments",
                until=lambda rs: any("ANALYST_OVERRIDE" in r["reasons"] for r in rs), timeout=30)
            [override] = [r for r in adjustments if "ANALYST_OVERRIDE" in r["reasons"]]
            assert override["user_id"] == target_user and override["new_limit"] == 35.0

            # A control record that is not one is dead-lettered by the user's owner, with the reason.
            await client.send(f"{app_id}-reviews", users[3], {"control_id": "x", "user_id": users[3],
                                                              "payment_id": "rv-p3", "resolution": "maybe",
                                                              "analyst": "mallory", "ts": now_ms()})
            source = f"{prefix}{app_id}-reviews"
            dead = await client.read("dead-letters", timeout=30,
                                     until=lambda rs: any(r["source_topic"] == source for r in rs))
            [bad] = [r for r in dead if r["source_topic"] == source]
            assert "resolution must be one of" in bad["error"], bad

        # The dashboard's panel lists the queue and resolves the oldest case.
        if not [p for p in CHROMIUM if not os.access(p, os.X_OK)]:
            remaining = await resolve_in_dashboard(workers[0], remaining, http)

        # Both workers go; a fresh one recovers the whole state from the changelog.
        for w in workers:
            w.stop()
        fresh = WorkerProcess(bootstrap, prefix, app_id, tmp_path / "fresh", **env).start()
        workers = [fresh]
        await wait_for(lambda: http.ready(workers), 90, "the fresh worker ready")
        started = time.monotonic()
        await wait_for(lambda: queue_is(fresh, remaining), 60, "the queue recovered")
        await wait_for(lambda: resolved(fresh), 30, "the resolution recovered")
        status, body = await http.get(fresh, f"/reviews/rv-p2?user_id={users[2]}")
        assert status == 200 and body["status"] == "approve" and body["audit"][0]["analyst"] == "bob"
        assert time.monotonic() - started < 60
    finally:
        for w in workers:
            w.stop()


async def resolve_in_dashboard(w: WorkerProcess, queue: list[tuple[str, str]], http: Http
                               ) -> list[tuple[str, str]]:
    """Approve the oldest case in the dashboard's review panel as analyst carol; the queue after."""
    from selenium.webdriver.common.by import By

    driver = await asyncio.to_thread(_browser)
    try:
        await asyncio.to_thread(driver.get, w.url("/"))

        async def until(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
            async def probe() -> object:
                return await asyncio.to_thread(check)

            await wait_for(probe, timeout, what)

        await until(lambda: driver.find_element(By.ID, "token-box").is_displayed(), 15, "token prompt")

        def give_token() -> None:
            driver.find_element(By.ID, "token").send_keys(TOKEN)
            driver.find_element(By.ID, "token-set").click()

        await asyncio.to_thread(give_token)

        # The panel redraws its rows every 5 s: read them and click in one script, never on a stale row.
        def rows() -> list[str]:
            return driver.execute_script(
                "return [...document.querySelectorAll('#reviews tbody tr')].map(r => r.innerText)")

        await until(lambda: len(rows()) == len(queue) or rows(), 20, "the queue in the panel")
        assert queue[0][1] in rows()[0]  # oldest first

        def approve_oldest() -> None:
            driver.find_element(By.ID, "review-analyst").send_keys("carol")
            driver.find_element(By.ID, "review-note").send_keys("looked fine")
            driver.execute_script("document.querySelector('#reviews tbody tr .resolve-approve').click()")

        await asyncio.to_thread(approve_oldest)
        await until(lambda: "approve sent" in driver.find_element(By.ID, "review-result").text
                    or driver.find_element(By.ID, "review-result").text, 15, "the resolution sent")
        await until(lambda: len(rows()) == len(queue) - 1 or rows(), 30, "the case gone from the panel")
    finally:
        await asyncio.to_thread(driver.quit)
    user, payment_id = queue[0]
    status, body = await http.get(w, f"/reviews/{payment_id}?user_id={user}")
    assert status == 200 and body["status"] == "approve", body
    assert (body["audit"][0]["analyst"], body["audit"][0]["note"]) == ("carol", "looked fine")
    return queue[1:]
