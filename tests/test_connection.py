"""A request on a closed transport is a connection error, on uvloop too (runtime/faust/connection.py)."""

from __future__ import annotations

import asyncio

import pytest
import uvloop
from aiokafka import errors
from aiokafka.conn import AIOKafkaConnection
from aiokafka.protocol.metadata import MetadataRequest

from streamrisk.runtime.faust import connection


async def _connection_whose_transport_closed() -> tuple[AIOKafkaConnection, asyncio.AbstractServer]:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = AIOKafkaConnection("127.0.0.1", port)
    conn._reader, conn._writer = await asyncio.open_connection("127.0.0.1", port)
    conn._read_task = asyncio.ensure_future(asyncio.sleep(3600))
    conn._versions = {MetadataRequest.API_KEY: (0, 1)}
    conn._writer.transport.close()  # the broker went away; aiokafka's reader has not noticed yet
    await asyncio.sleep(0)
    return conn, server


def test_on_uvloop_aiokafka_alone_raises_what_its_callers_do_not_retry() -> None:
    async def main() -> None:
        conn, server = await _connection_whose_transport_closed()
        with pytest.raises(RuntimeError, match="closed"):
            connection._aiokafka_send(conn, MetadataRequest([]))
        conn._read_task.cancel()
        server.close()

    uvloop.run(main())


def test_a_request_on_a_closed_transport_is_a_retriable_connection_error_and_closes_it() -> None:
    connection.install_closed_transport_guard()

    async def main() -> None:
        conn, server = await _connection_whose_transport_closed()
        closed: list[object] = []
        conn._on_close_cb = lambda c, reason: closed.append(reason)
        with pytest.raises(errors.KafkaConnectionError):
            conn.send(MetadataRequest([]))
        assert closed, "the connection is closed, so the client connects again"
        server.close()

    uvloop.run(main())
