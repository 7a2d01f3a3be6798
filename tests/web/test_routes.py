"""The HTTP layer of a worker that has not joined its group yet (no broker): routes, auth, 400 and 503."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streamrisk.runtime.faust.app import build_app
from streamrisk.settings import Settings

TOKEN = "unit-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[TestClient, object]]:
    app, _ = build_app(Settings(data_dir=tmp_path, api_token=TOKEN))
    app.web.init_server()
    async with TestClient(TestServer(app.web.web_app)) as c:
        yield c, app


async def test_openapi_describes_exactly_the_routes_served(client: tuple[TestClient, object]) -> None:
    c, app = client
    served = {r.resource.canonical for r in app.web.web_app.router.routes()}  # type: ignore[attr-defined]
    doc = await (await c.get("/openapi.json", headers=AUTH)).json()
    assert set(doc["paths"]) == served
    for path, ops in doc["paths"].items():
        assert set(ops["get"]["responses"]) >= {"200"}, path


async def test_before_recovery_state_answers_503_with_retry_after_and_ready_says_why(
    client: tuple[TestClient, object],
) -> None:
    c, _ = client
    r = await c.get("/users/u1", headers=AUTH)
    assert r.status == 503 and r.headers["Retry-After"] == "1"
    assert "state table recovery" in (await r.json())["error"]
    r = await c.get("/ready", headers=AUTH)
    assert r.status == 503 and "state table recovery" in (await r.json())["waiting_for"]
    assert (await c.get("/health")).status == 200


async def test_malformed_ids_answer_400_before_anything_else(client: tuple[TestClient, object]) -> None:
    c, _ = client
    for path in ("/users/a%01b", "/merchants/" + "m" * 257, "/payments/p1", "/payments/p1?user_id=u%7F"):
        r = await c.get(path, headers=AUTH)
        assert r.status == 400, path
        assert (await r.json())["error"]


async def test_token_is_required_everywhere_but_health_and_the_page(
    client: tuple[TestClient, object],
) -> None:
    c, _ = client
    for path in ("/users/u1", "/merchants/m1", "/payments/p1?user_id=u1", "/ready", "/metrics", "/stats",
                 "/cluster", "/openapi.json"):
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
            r = await c.get(path, headers=headers)
            assert r.status == 401, (path, headers)
            assert r.headers["WWW-Authenticate"] == 'Bearer realm="streamrisk"'
    page = await c.get("/")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    html = await page.text()
    # Offline: nothing is loaded from another origin.
    assert "http://" not in html and "https://" not in html


async def test_a_peer_proof_is_a_credential_only_when_made_with_this_workers_peer_token(
    tmp_path: Path,
) -> None:
    from streamrisk.web.peer import PEER_HEADER, PEER_REPLY_HEADER, PeerAuth

    settings = Settings(data_dir=tmp_path, api_token=TOKEN, peer_token="unit-peer")
    app, _ = build_app(settings)
    app.web.init_server()
    async with TestClient(TestServer(app.web.web_app)) as c:
        proof, nonce = PeerAuth("unit-peer").sign_request(settings.web_url, "/openapi.json", {})
        r = await c.get("/openapi.json", headers=proof)  # no bearer token: the proof stands in for it
        assert r.status == 200
        assert PeerAuth("unit-peer").verify_reply(nonce, 200, await r.read(), r.headers[PEER_REPLY_HEADER])
        for bad in (PeerAuth("guess").sign_request(settings.web_url, "/openapi.json", {})[0],
                    PeerAuth("unit-peer").sign_request("http://elsewhere:6066", "/openapi.json", {})[0],
                    PeerAuth("unit-peer").sign_request(settings.web_url, "/stats", {})[0],
                    {PEER_HEADER: "garbage"}):
            r = await c.get("/openapi.json", headers=bad)
            assert r.status == 401 and "peer proof" in (await r.json())["error"], bad
            assert PEER_REPLY_HEADER not in r.headers
