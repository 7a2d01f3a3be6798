"""Exact event-time sliding-window state (count/sum/mean/std/max/distinct)."""

from streamrisk.windows.sliding import SlidingWindows
from streamrisk.windows.spec import AddPath, Event, WindowSpec

__all__ = [
    "AddPath",
    "Event",
    "SlidingWindows",
    "WindowSpec",
]
