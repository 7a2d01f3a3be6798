"""Topics out: batched produce of decisions, alerts, adjustments and dead letters.

The hot path serialises with orjson and hands bytes straight to the producer; a batch's deliveries are
awaited together before its input offsets are acknowledged, so nothing is lost if the worker dies.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import time
from collections.abc import Awaitable
from typing import Any, Protocol

import orjson

log = logging.getLogger(__name__)

# A dead letter must fit the producer's request size (about 1 MB): at most this many bytes of the
# original value are forwarded (JSON escaping can grow text up to 6x), and the error text is bounded.
DEAD_LETTER_VALUE_MAX = 64 * 1024
DEAD_LETTER_ERROR_MAX = 1000
# Valid keys are ids (at most 256 characters); a longer key is cut in the dead letter.
DEAD_LETTER_KEY_MAX = 1024


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
    source_topic: str,
    partition: int,
    offset: int,
    error: str,
    value: bytes | None,
    max_value_bytes: int = DEAD_LETTER_VALUE_MAX,
) -> dict[str, Any]:
    """The contract's dead-letter record for one rejected input record.

    A value longer than `max_value_bytes` is cut, and the record says so (`value_truncated`) with
    the original's size and SHA-256, so the producer can still find the record it sent.
    """
    if len(error) > DEAD_LETTER_ERROR_MAX:
        error = error[: DEAD_LETTER_ERROR_MAX - 20] + f"... ({len(error)} chars)"
    out: dict[str, Any] = {
        "source_topic": source_topic,
        "partition": partition,
        "offset": offset,
        "error": error,
        "ts": int(time.time() * 1000),
    }
    raw = value or b""
    cut = raw
    if len(raw) > max_value_bytes:
        cut = raw[:max_value_bytes]
        out["value_truncated"] = True
        out["value_size"] = len(raw)
        out["value_sha256"] = hashlib.sha256(raw).hexdigest()
    try:
        out["value"] = cut.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A cut inside a multi-byte character is not a reason to fall back to base64.
        if cut is not raw and exc.start >= len(cut) - 3 and exc.reason == "unexpected end of data":
            out["value"] = cut[: exc.start].decode("utf-8")
        else:
            out["value"] = base64.b64encode(cut).decode("ascii")
            out["value_encoding"] = "base64"
    return out


def dead_letter_key(key: bytes | None) -> bytes | None:
    """The original key, cut to DEAD_LETTER_KEY_MAX bytes (no valid key is that long)."""
    if key is not None and len(key) > DEAD_LETTER_KEY_MAX:
        return key[:DEAD_LETTER_KEY_MAX]
    return key


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
