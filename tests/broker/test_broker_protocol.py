"""The readiness probe must reject peers that are not Kafka brokers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from streamrisk.broker._protocol import ProtocolError, probe_metadata

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def http_like_server() -> Iterator[int]:
    """Accepts one connection and answers with bytes that are not a Kafka response."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()


def test_non_kafka_peer_is_rejected(http_like_server: int) -> None:
    with pytest.raises((ProtocolError, ConnectionError)):
        probe_metadata("127.0.0.1", http_like_server, timeout=2)


def test_nothing_listening_is_an_os_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(OSError):
        probe_metadata("127.0.0.1", port, timeout=1)
