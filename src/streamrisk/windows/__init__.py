"""Exact event-time sliding-window state (count/sum/mean/std/max/distinct)."""

from streamrisk.windows.sliding import AddPath, Event, SlidingWindows, WindowSpec

__all__ = [
    "AddPath",
    "Event",
    "SlidingWindows",
    "WindowSpec",
]
