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
# Valid keys are ids (at most 256 characters); a longer key is cut in the dead letter.
DEAD_LETTER_KEY_MAX = 1024
# Kafka's default max.message.bytes; the worker reads the dead-letters topic's own at start.
DEFAULT_RECORD_LIMIT = 1024 * 1024
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
    max.message.bytes): a large invalid record is dead-lettered, never a reason to stop."""
    key = dead_letter_key(key)
    if key is not None and len(key) > record_limit // 4:
        key = key[: record_limit // 4]
    room = record_limit - _RECORD_OVERHEAD - len(key or b"")
    max_value = DEAD_LETTER_VALUE_MAX
    while True:
        out = dead_letter_value(source_topic, partition, offset, error, value, max_value)
        size = len(orjson.dumps(out))
        if size <= room or max_value == 0:
            break
        # JSON escaping makes a value byte cost up to 6 (base64: 4/3): shrink by the excess, at least half.
        max_value = max(0, min(max_value // 2, max_value - (size - room)))
    if size > room:  # even without the value: the error text goes too, the position stays
        out["error"] = out["error"][: max(0, room - size + len(out["error"]) - 40)] + "... (cut)"
    return key, out


def dead_letter_key(key: bytes | None) -> bytes | None:
    """The original key, cut to DEAD_LETTER_KEY_MAX bytes (no valid key is that long)."""
    if key is not None and len(key) > DEAD_LETTER_KEY_MAX:
        return key[:DEAD_LETTER_KEY_MAX]
    return key
