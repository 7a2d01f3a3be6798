"""Minimal blocking Kafka wire client: ApiVersions + Metadata, used as the readiness probe.

It is deliberately tiny and synchronous so that `start_broker` works whether or not an
asyncio loop is already running in the calling thread (as in pytest-asyncio fixtures).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

API_METADATA = 3
API_VERSIONS = 18
_CLIENT_ID = b"streamrisk-probe"
# Highest non-flexible Metadata version; v9+ uses compact encodings we do not need.
_METADATA_MAX_SIMPLE = 8


class ProtocolError(Exception):
    """The peer answered, but not like a Kafka broker would."""


@dataclass(frozen=True)
class BrokerInfo:
    """One broker as listed in a Metadata response."""

    node_id: int
    host: str
    port: int


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _take(self, fmt: str) -> tuple[int, ...]:
        try:
            values = struct.unpack_from(fmt, self._data, self._pos)
        except struct.error as exc:
            raise ProtocolError(f"truncated response: {exc}") from exc
        self._pos += struct.calcsize(fmt)
        return values

    def i16(self) -> int:
        return self._take(">h")[0]

    def i32(self) -> int:
        return self._take(">i")[0]

    def string(self) -> str | None:
        length = self.i16()
        if length < 0:
            return None
        raw = self._data[self._pos : self._pos + length]
        if len(raw) != length:
            raise ProtocolError("truncated string")
        self._pos += length
        return raw.decode("utf-8", "replace")


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection mid-response")
        chunks.extend(chunk)
    return bytes(chunks)


def _call(sock: socket.socket, api_key: int, version: int, corr: int, body: bytes) -> _Reader:
    # Request header v1 (non-flexible): key, version, correlation id, nullable client id.
    header = struct.pack(">hhih", api_key, version, corr, len(_CLIENT_ID)) + _CLIENT_ID
    message = header + body
    sock.sendall(struct.pack(">i", len(message)) + message)
    (size,) = struct.unpack(">i", _recv_exact(sock, 4))
    if not 4 <= size <= 64 * 1024 * 1024:
        raise ProtocolError(f"implausible response size {size}")
    reader = _Reader(_recv_exact(sock, size))
    if reader.i32() != corr:
        raise ProtocolError("correlation id mismatch")
    return reader


def _api_versions(sock: socket.socket) -> dict[int, tuple[int, int]]:
    # v0 is answered by every broker, even ones that dropped it (they reply in v0 format).
    reader = _call(sock, API_VERSIONS, 0, 1, b"")
    error = reader.i16()
    versions: dict[int, tuple[int, int]] = {}
    for _ in range(reader.i32()):
        key, low, high = reader.i16(), reader.i16(), reader.i16()
        versions[key] = (low, high)
    if error not in (0, 35) or not versions:  # 35 = UNSUPPORTED_VERSION, still lists APIs
        raise ProtocolError(f"ApiVersions error code {error}")
    return versions


def probe_metadata(host: str, port: int, timeout: float = 2.0) -> list[BrokerInfo]:
    """Send ApiVersions then Metadata (no topics) and return the advertised brokers.

    Raises OSError if nothing listens and ProtocolError if the reply is not Kafka-shaped.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        versions = _api_versions(sock)
        if API_METADATA not in versions:
            raise ProtocolError("broker does not advertise the Metadata API")
        low, high = versions[API_METADATA]
        version = min(high, _METADATA_MAX_SIMPLE)
        if version < max(low, 1):
            raise ProtocolError(f"no usable Metadata version in {low}..{high}")
        body = struct.pack(">i", 0)  # empty topic list: brokers only (v1+ semantics)
        if version >= 4:
            body += b"\x00"  # allow_auto_topic_creation = false
        if version >= 8:
            body += b"\x00\x00"  # no authorized-operations lookups
        reader = _call(sock, API_METADATA, version, 2, body)
        if version >= 3:
            reader.i32()  # throttle_time_ms
        brokers = []
        for _ in range(reader.i32()):
            node_id = reader.i32()
            broker_host = reader.string() or ""
            broker_port = reader.i32()
            reader.string()  # rack
            brokers.append(BrokerInfo(node_id, broker_host, broker_port))
        return brokers
