"""Topics out: batched produce of decisions, alerts, adjustments and dead letters.

The hot path serialises with orjson and hands bytes straight to the producer; a batch's deliveries are
awaited together before its input offsets are acknowledged, so nothing is lost if the worker dies.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable
from typing import Any, Protocol

import orjson


class Producer(Protocol):
    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> Awaitable[Any]: ...


def dead_letter_value(
    source_topic: str, partition: int, offset: int, error: str, value: bytes | None
) -> dict[str, Any]:
    """The contract's dead-letter record for one rejected input record."""
    out: dict[str, Any] = {
        "source_topic": source_topic,
        "partition": partition,
        "offset": offset,
        "error": error,
        "ts": int(time.time() * 1000),
    }
    raw = value or b""
    try:
        out["value"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        out["value"] = base64.b64encode(raw).decode("ascii")
        out["value_encoding"] = "base64"
    return out


class Outbox:
    """Collects a batch's outgoing records and waits for all their deliveries at once."""

    __slots__ = ("_pending", "_producer", "sent")

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._pending: list[Awaitable[Any]] = []
        self.sent: dict[str, int] = {}

    async def send(
        self, topic: str, key: str | bytes | None, value: dict[str, Any] | bytes
    ) -> None:
        if isinstance(key, str):
            key = key.encode()
        if not isinstance(value, bytes):
            value = orjson.dumps(value)
        fut = await self._producer.send(topic, key, value, None, None, None)
        self._pending.append(fut)
        self.sent[topic] = self.sent.get(topic, 0) + 1

    async def flush(self) -> None:
        """Wait until every record sent since the last flush is acknowledged by the broker."""
        if self._pending:
            pending, self._pending = self._pending, []
            await asyncio.gather(*pending)
