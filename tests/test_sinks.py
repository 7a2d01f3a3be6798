"""Dead letters: the original record, forwarded whole when small and cut (with its size and hash) when not."""

from __future__ import annotations

import base64
import hashlib

import orjson
import pytest

from streamrisk.core.sinks import PRODUCER_REQUEST_MAX, dead_letter_value, fitted_dead_letter

MAX_REQUEST = 1_000_000  # Faust's producer_max_request_size default


def test_small_value_is_forwarded_whole_as_text_or_base64() -> None:
    text = dead_letter_value("payments", 1, 41, "bad", b'{"a": "\xc3\xa9"}')
    assert text["value"] == '{"a": "é"}' and "value_truncated" not in text
    binary = dead_letter_value("payments", 1, 41, "bad", b"\xff\xfe")
    assert binary["value_encoding"] == "base64" and base64.b64decode(binary["value"]) == b"\xff\xfe"


def test_large_value_is_cut_with_its_size_and_sha256() -> None:
    raw = b'{"currency": "' + "é".encode() * 3_000_000 + b'"}'
    letter = dead_letter_value("payments", 0, 7, "currency must be at most 256 characters", raw)
    assert letter["value_truncated"] is True
    assert letter["value_size"] == len(raw)
    assert letter["value_sha256"] == hashlib.sha256(raw).hexdigest()
    assert raw.decode().startswith(letter["value"])  # cut on a character boundary, still text
    assert "value_encoding" not in letter


def test_worst_case_dead_letter_fits_the_producers_request_size() -> None:
    # Control characters grow six-fold as JSON escapes; a 5 MB error text is bounded too.
    raw = b"\x01" * 5_000_000
    key, letter = fitted_dead_letter("payments", 0, 7, "x" * 5_000_000, raw, b"k" * 5_000_000, 10_000_000)
    assert len(orjson.dumps(letter)) + len(key or b"") < MAX_REQUEST
    assert len(letter["error"]) <= 1000
    assert letter["key_truncated"] is True and letter["key_size"] == 5_000_000
    assert letter["key_sha256"] == hashlib.sha256(b"k" * 5_000_000).hexdigest()


@pytest.mark.parametrize("size", [257, 70_000, 900_000])
def test_the_original_key_is_kept_whole_when_it_fits(size: int) -> None:
    original = "🦊".encode() * (size // 4) + b"\xff"  # an id over 256 characters, not even UTF-8
    key, letter = fitted_dead_letter("payments", 2, 9, "user_id must be at most 256 characters", b"{}",
                                     original)
    assert key == original and "key_truncated" not in letter
    assert len(orjson.dumps(letter)) + len(key) <= PRODUCER_REQUEST_MAX - 200


def test_a_key_too_large_for_the_topic_is_cut_and_says_so_with_the_reason_kept() -> None:
    original = b"u" * 50_000
    error = "payments record at partition 0 offset 3: user_id must be at most 256 characters (got 50000)"
    key, letter = fitted_dead_letter("payments", 0, 3, error, b"v" * 60_000, original, 20_000)
    assert key is not None and original.startswith(key) and len(key) > 15_000
    assert letter["key_truncated"] is True and letter["key_size"] == 50_000
    assert letter["key_sha256"] == hashlib.sha256(original).hexdigest()
    assert letter["error"] == error and letter["value_truncated"] is True
    assert len(orjson.dumps(letter)) + len(key) <= 20_000 - 200


@pytest.mark.parametrize("value", [b"\x01" * 70_000, "é".encode() * 35_000, bytes(range(256)) * 300])
@pytest.mark.parametrize("limit", [2_000, 10_000, 100_000])
def test_a_dead_letter_is_cut_to_fit_the_topics_largest_record(value: bytes, limit: int) -> None:
    error = "payments record at offset 41: bad"
    key, out = fitted_dead_letter("payments", 3, 41, error, value, b"k" * 900, limit)
    assert len(orjson.dumps(out)) + len(key or b"") <= limit - 200
    assert out["value_truncated"] is True and out["value_size"] == len(value)
    assert out["value_sha256"] == hashlib.sha256(value).hexdigest()
    assert (out["source_topic"], out["partition"], out["offset"]) == ("payments", 3, 41)


def test_a_dead_letter_that_fits_is_left_whole() -> None:
    key, out = fitted_dead_letter("payments", 0, 1, "bad", b'{"x": 1}', b"k", 1_000_000)
    assert key == b"k" and out["value"] == '{"x": 1}' and "value_truncated" not in out
