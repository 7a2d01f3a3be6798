"""Round trips and sizes of the window event record codec."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrisk.windows import decode_event, decode_key, encode_event, encode_key, event_tag

int64 = st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=500, deadline=None)
@given(
    series=st.integers(0, 255),
    ts=int64,
    value=int64,
    cats=st.lists(st.text(max_size=300), max_size=4).map(tuple),
)
def test_event_record_round_trips(series, ts, value, cats):
    assert decode_event(encode_event(series, ts, value, cats)) == (series, ts, value, cats)


@given(entity=st.text(), tag=int64)
def test_key_round_trips(entity, tag):
    assert decode_key(encode_key(entity, tag)) == (entity, tag)


def test_record_size_does_not_depend_on_values_or_time():
    small = encode_event(0, 0, 0, ("m000001", "d01"))
    large = encode_event(0, 1_732_528_000_123, -(10**12), ("m999999", "d20"))
    assert len(small) == len(large) == 30


def test_unknown_version_and_truncation_are_rejected():
    rec = encode_event(1, 2, 3, ("abc",))
    with pytest.raises(ValueError, match="version"):
        decode_event(b"\x09" + rec[1:])
    with pytest.raises(ValueError, match="truncated"):
        decode_event(rec[:-1])


def test_event_tag_is_stable_signed_64_bit():
    t = event_tag("evt-0001")
    assert t == event_tag(b"evt-0001")
    assert -(2**63) <= t < 2**63
    assert t != event_tag("evt-0002")
