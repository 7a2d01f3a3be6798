"""Topics out: batched produce of decisions, alerts, adjustments and dead letters.

The hot path serialises with orjson and hands bytes straight to the producer; a batch's deliveries are
awaited together before its input offsets are acknowledged, so nothing is lost if the worker dies.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Awaitable
from typing import Any, Protocol

import orjson

log = logging.getLogger(__name__)


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

    __slots__ = ("_pending", "_producer", "_topics", "sent")
    stall_warning_s = 10.0

    def __init__(self, producer: Producer) -> None:
        self._producer = producer
        self._pending: list[Awaitable[Any]] = []
        self._topics: list[str] = []
        self.sent: dict[str, int] = {}

    async def send(
        self,
        topic: str,
        key: str | bytes | None,
        value: dict[str, Any] | bytes | None,
        partition: int | None = None,
    ) -> None:
        """Queue one record; `None` as value is a tombstone, `partition` None lets the key decide."""
        if isinstance(key, str):
            key = key.encode()
        if value is not None and not isinstance(value, bytes):
            value = orjson.dumps(value)
        fut = await self._producer.send(topic, key, value, partition, None, None)
        self._pending.append(fut)
        self._topics.append(topic)
        self.sent[topic] = self.sent.get(topic, 0) + 1

    async def flush(self) -> None:
        """Wait until every record sent since the last flush is acknowledged by the broker."""
        if self._pending:
            pending, self._pending = self._pending, []
            topics, self._topics = self._topics, []
            while True:
                _, waiting = await asyncio.wait(pending, timeout=self.stall_warning_s)
                if not waiting:
                    break
                stuck = sorted({topics[i] for i, f in enumerate(pending) if f in waiting})
                log.warning(
                    "still waiting after %.0f s for the broker to acknowledge %d records to %s",
                    self.stall_warning_s, len(waiting), ", ".join(stuck),
                )
            for f in pending:
                f.result()  # raise the first delivery error, if any
