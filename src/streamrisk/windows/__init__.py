"""Exact event-time sliding-window state (count/sum/mean/std/max/distinct) and its record codec."""

from streamrisk.windows.codec import (
    decode_event,
    decode_key,
    encode_event,
    encode_key,
    event_tag,
)
from streamrisk.windows.sliding import AddPath, Event, SlidingWindows, WindowSpec

__all__ = [
    "AddPath",
    "Event",
    "SlidingWindows",
    "WindowSpec",
    "decode_event",
    "decode_key",
    "encode_event",
    "encode_key",
    "event_tag",
]
