"""A group member that advertises someone else's URL never receives a user's bearer token (nor the
peer token), and its answers are not passed off as the deployment's; a worker with an API token but no
peer token does not forward at all.

Three workers share a group: `peer` (API token, peer token), `lone` (API token, no peer token) and
`rogue` (its own tokens), which advertises the URL of a recording server run by this test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from streamrisk.procs import free_port
from streamrisk.web.owner import key_partition
from streamrisk.web.peer import PEER_HEADER
from tests.harness import WorkerProcess, unique, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TOKEN = "peer-test-api-token"
PEER_TOKEN = "peer-test-peer-token"
ROGUE_TOKEN = "rogue-api-token"
PARTITIONS = 4


class Recorder:
    """An HTTP server that records every request and answers like a worker would (unsigned)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _any(self, request: web.Request) -> web.Response:
        self.requests.append((request.path_qs, dict(request.headers)))
        return web.json_response({"user_id": "forged", "features": {"payment_count_5m": 999}})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._any)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def group(bootstrap: str, tmp_path: Path) -> AsyncIterator[tuple[dict[str, WorkerProcess], Recorder]]:
    recorder = Recorder()
    await recorder.start()
    prefix, app_id = unique("peer") + ".", unique("app")
    common = {"STREAMRISK_PARTITIONS": str(PARTITIONS)}
    workers = {
        "peer": WorkerProcess(bootstrap, prefix, app_id, tmp_path / "peer", STREAMRISK_API_TOKEN=TOKEN,
                              STREAMRISK_PEER_TOKEN=PEER_TOKEN, **common),
        "lone": WorkerProcess(bootstrap, prefix, app_id, tmp_path / "lone", STREAMRISK_API_TOKEN=TOKEN,
                              **common),
        "rogue": WorkerProcess(bootstrap, prefix, app_id, tmp_path / "rogue",
                               STREAMRISK_API_TOKEN=ROGUE_TOKEN, STREAMRISK_PEER_TOKEN="a-guess",
                               STREAMRISK_WEB_URL=recorder.url, **common),
    }
    try:
        for w in workers.values():
            w.start()
        yield workers, recorder
    except BaseException:
        for name, w in workers.items():
            print(f"worker {name}:\n{w.log()}")
        raise
    finally:
        for w in workers.values():
            w.stop()
        await recorder.stop()


async def _get(session: aiohttp.ClientSession, w: WorkerProcess, path: str, token: str) -> tuple[int, dict]:
    try:
        async with session.get(w.url(path), headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, await r.json(content_type=None)
    except (aiohttp.ClientConnectionError, ValueError):
        return 0, {}


async def test_a_member_advertising_another_url_never_gets_a_token_and_its_answers_are_refused(
    group: tuple[dict[str, WorkerProcess], Recorder],
) -> None:
    workers, recorder = group
    tokens = {"peer": TOKEN, "lone": TOKEN, "rogue": ROGUE_TOKEN}
    owned: dict[str, list[int]] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async def settled() -> object:
            for name, w in workers.items():
                status, stats = await _get(session, w, "/stats", tokens[name])
                if status != 200 or not stats.get("ready") or not stats.get("assigned_partitions"):
                    return name, status, stats.get("waiting_for"), stats.get("assigned_partitions")
                owned[name] = stats["assigned_partitions"]
            return sorted(p for parts in owned.values() for p in parts) == list(range(PARTITIONS)) or owned

        await wait_for(settled, 90, "three workers, each owning some of the partitions")

        def key_of(owner: str) -> str:
            return next(k for k in (f"k{i}" for i in range(1000))
                        if key_partition(k, PARTITIONS) in owned[owner])

        # The peer worker asks the rogue's advertised URL with a proof, and refuses its answer.
        deadline = time.monotonic() + 30
        while True:  # a rebalance in between answers 503: ask again
            status, body = await _get(session, workers["peer"], f"/users/{key_of('rogue')}", TOKEN)
            if status != 503 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert status == 502, body
        assert "did not prove it is a worker of this deployment" in body["error"], body
        assert "forged" not in str(body)
        # The /cluster page asks every member: the rogue's entry is an error, not its numbers.
        status, cluster = await _get(session, workers["peer"], "/cluster", TOKEN)
        assert status == 200
        by_url = {e["url"]: e for e in cluster["workers"]}
        assert "stats" not in by_url[recorder.url] and "did not prove" in by_url[recorder.url]["error"]

        # The worker without a peer token forwards nothing, and says which setting is missing.
        asked = len(recorder.requests)
        for owner in ("rogue", "peer"):
            status, body = await _get(session, workers["lone"], f"/users/{key_of(owner)}", TOKEN)
            assert status == 502 and "STREAMRISK_PEER_TOKEN" in body["error"], body
        status, cluster = await _get(session, workers["lone"], "/cluster", TOKEN)
        assert all("STREAMRISK_PEER_TOKEN" in e["error"] for e in cluster["workers"] if "stats" not in e)
        assert len(recorder.requests) == asked, "a worker without a peer token sent a request"

        # The peer worker's proof is not the lone worker's credential either.
        status, body = await _get(session, workers["peer"], f"/users/{key_of('lone')}", TOKEN)
        assert status == 502 and "did not prove" in body["error"], body

    assert recorder.requests, "the rogue's URL was never asked: the test proved nothing"
    for path, headers in recorder.requests:
        assert PEER_HEADER in headers, (path, headers)
        assert "Authorization" not in headers, (path, headers)
        sent = " ".join(f"{k}: {v}" for k, v in headers.items())
        assert TOKEN not in sent and PEER_TOKEN not in sent, (path, headers)
