"""A request the server cannot read (a URL or header over aiohttp's line limit, bytes that are not HTTP)
answers the API's JSON error with one log line, not a traceback; on Faust's own web server, as a worker
runs it (not aiohttp's TestServer, which brings a runner of its own)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from streamrisk.procs import free_port
from streamrisk.runtime.faust.app import build_app
from streamrisk.settings import Settings

TOKEN = "unit-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def base_url(tmp_path: Path) -> AsyncIterator[str]:
    settings = Settings(data_dir=tmp_path, api_token=TOKEN, web_port=free_port())
    app, _ = build_app(settings)
    app.web.init_server()
    await app.web.start_server()  # what the worker's web service runs: Faust's runner, a TCP site
    try:
        yield f"http://127.0.0.1:{settings.web_port}"
    finally:
        await app.web.stop_server()


def problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log records at ERROR or above, or with a traceback."""
    return [f"{r.name} {r.levelname}: {r.getMessage()}" for r in caplog.records
            if r.levelno >= logging.ERROR or r.exc_info or r.exc_text]


@pytest.mark.parametrize("n", [10_000, 100_000])
async def test_an_id_too_long_to_read_answers_a_json_400_without_a_traceback(
    base_url: str, caplog: pytest.LogCaptureFixture, n: int
) -> None:
    caplog.set_level(logging.DEBUG)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base_url}/users/{'u' * n}", headers=AUTH) as r:
            assert r.status == 400 and r.content_type == "application/json"
            error = (await r.json())["error"]
        assert "longer than 8190 bytes" in error and len(error) < 200
        # An id over 256 characters that can be read is refused by the route, the same way.
        async with session.get(f"{base_url}/users/{'u' * 300}", headers=AUTH) as r:
            assert r.status == 400 and "longer than 256 characters" in (await r.json())["error"]
        async with session.get(f"{base_url}/health") as r:
            assert r.status == 200  # the server goes on
    assert problems(caplog) == []
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("longer than 8190 bytes" in m for m in said), said


async def test_a_header_too_long_and_bytes_that_are_not_http_answer_json_400s(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    big = {**AUTH, "X-Big": "h" * 20_000}
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/users/u1", headers=big) as r:
        assert r.status == 400 and "longer than 8190 bytes" in (await r.json())["error"]
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not HTTP\r\n\r\n")  # a TLS hello, say
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].endswith(b" 400 Bad Request") and b"application/json" in head, answer[:300]
    assert body.startswith(b'{"error":"malformed HTTP request'), body[:300]
    assert problems(caplog) == []
