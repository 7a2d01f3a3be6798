"""Dead letters: the contract's record for a rejected input record, bounded to fit any producer.

(Records are produced by `delivery.Delivery`, which owns when they must be acknowledged.)
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from typing import Any

import orjson

log = logging.getLogger(__name__)

# A dead letter must fit the producer's request size (about 1 MB): at most this many bytes of the
# original value are forwarded (JSON escaping can grow text up to 6x), and the error text is bounded.
DEAD_LETTER_VALUE_MAX = 64 * 1024
DEAD_LETTER_ERROR_MAX = 1000
# Kafka's default max.message.bytes; the worker reads the dead-letters topic's own at start.
DEFAULT_RECORD_LIMIT = 1024 * 1024
# The worker's producers refuse a record above their max request size: Faust's producer_max_request_size
# (1,000,000 by default; aiokafka's own, of the exactly-once producer, is 1 MiB). A dead letter fits both.
PRODUCER_REQUEST_MAX = 1_000_000
# Bytes of a record batch that are not the key or value (batch and record headers, with room).
_RECORD_OVERHEAD = 256


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


def fitted_dead_letter(
    source_topic: str,
    partition: int,
    offset: int,
    error: str,
    value: bytes | None,
    key: bytes | None,
    record_limit: int = DEFAULT_RECORD_LIMIT,
) -> tuple[bytes | None, dict[str, Any]]:
    """(key, value) of the dead letter, cut until the record fits `record_limit` bytes (the topic's
    max.message.bytes) and the producer's request size: a large invalid record is dead-lettered, never
    a reason to stop.

    The message key is the original key, whole. What gives way is the forwarded value first (the record
    keeps its size and SHA-256), then the key, only when it alone would not fit beside the position and
    the reason (a key near the record limit, or a dead-letters topic with a smaller limit than the
    input's); the record then says so with `key_truncated`, `key_size` and `key_sha256`.
    """
    room = min(record_limit, PRODUCER_REQUEST_MAX) - _RECORD_OVERHEAD
    # The smallest dead letter: position, reason, and of the value only its size and hash.
    bare = len(orjson.dumps(dead_letter_value(source_topic, partition, offset, error, value, 0)))
    key_cut: dict[str, Any] = {}
    if key is not None and len(key) > room - bare:
        key_cut = {"key_truncated": True, "key_size": len(key), "key_sha256": hashlib.sha256(key).hexdigest()}
        key = key[: max(0, room - bare - len(orjson.dumps(key_cut)))]
    room -= len(key or b"")
    max_value = DEAD_LETTER_VALUE_MAX
    while True:
        out = dead_letter_value(source_topic, partition, offset, error, value, max_value)
        out.update(key_cut)
        size = len(orjson.dumps(out))
        if size <= room or max_value == 0:
            break
        # JSON escaping makes a value byte cost up to 6 (base64: 4/3): shrink by the excess, at least half.
        max_value = max(0, min(max_value // 2, max_value - (size - room)))
    if size > room:  # a limit below even the bare record: the error text goes too, the position stays
        out["error"] = out["error"][: max(0, room - size + len(out["error"]) - 40)] + "... (cut)"
    return key, out
