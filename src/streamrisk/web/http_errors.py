"""Requests the HTTP server cannot even read (a URL or header line over aiohttp's 8190-byte limit, bytes
that are not HTTP) answered as the API's other errors are: a JSON `{"error": ...}` and one log line.

aiohttp answers these before any route or middleware runs, with a text/plain 400 and a logged
traceback per request ("Error handling request"), so `GET /users/<10,000 characters>` filled the log.
Its per-connection protocol is the one place that sees them: `JsonErrorHandler` overrides its
`handle_error` for client errors, and `serve_json_errors` makes Faust's web server use it.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web import AppRunner, Response
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from aiohttp.web_server import Server

log = logging.getLogger(__name__)
SHOWN_CHARS = 200


def parse_error_text(exc: HttpProcessingError) -> str:
    """What was wrong with a request aiohttp could not read, in a sentence (never the whole line)."""
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 else "8190"
        return f"the request line or a header is longer than {limit} bytes (an id is at most 256 characters)"
    message = " ".join(str(exc.message or type(exc).__name__).split())
    if len(message) > SHOWN_CHARS:
        message = message[:SHOWN_CHARS] + "..."
    return f"malformed HTTP request: {message}"


class JsonErrorHandler(RequestHandler):
    """aiohttp's protocol; a request it cannot parse gets the API's JSON error and an INFO line, not a
    text/plain body and an ERROR with a traceback (server errors, 5xx, are left to aiohttp)."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        if status >= 500 or not isinstance(exc, HttpProcessingError) or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        text = parse_error_text(exc)
        log.info("HTTP %d to %s: %s", status, request.remote, text)
        response = Response(status=status, body=orjson.dumps({"error": text}),
                            content_type="application/json", charset="utf-8")
        response.force_close()  # the rest of what the client sent cannot be read as a request either
        return response


class _Server(Server):
    """aiohttp's Server, whose connections are JsonErrorHandlers."""

    def __call__(self) -> RequestHandler:
        return JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class JsonErrorRunner(AppRunner):
    """An AppRunner serving with JsonErrorHandler."""

    async def _make_server(self) -> Server:
        server = await super()._make_server()
        server.__class__ = _Server  # the Server aiohttp built and set up, making JsonErrorHandlers
        return server


def serve_json_errors(web: Any) -> None:
    """Make Faust's aiohttp web driver (`app.web`) serve with JsonErrorHandler; before it starts."""
    web._runner = JsonErrorRunner(web.web_app, access_log=None)  # as Faust builds its own
