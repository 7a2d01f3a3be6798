"""What a sliding window is configured with and what it reports: the spec, add paths, held events."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import IntEnum

__all__ = ["AddPath", "Event", "WindowSpec"]

# Event-time sentinels shared by the window modules.
# Last-seen sentinel for a category: older than any int64 event time.
NEVER = -(1 << 63)
# "Nothing will ever leave": later than any int64 event time plus a horizon.
NO_EXPIRY = 1 << 64

# (ts, value, cats, eid) as yielded by SlidingWindows.events(); eid is 0 without id tracking.
Event = tuple[int, int, tuple[Hashable, ...], int]


class AddPath(IntEnum):
    """Which path ``SlidingWindows.add`` took for an event."""

    IN_ORDER = 0  # ts >= end: appended (ts > end also moves the end)
    LATE_FAST = 1  # end - lateness <= ts < end: inserted in time order
    LATE_SLOW = 2  # end - widest < ts < end - lateness: inserted in time order, counted as late
    TOO_OLD = 3  # ts <= end - widest: outside every window, ignored


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """Configuration shared by every window of one feature family (build once, reuse per key).

    horizons: window lengths in ms, e.g. (300_000, 3_600_000, 86_400_000); indexed by ``i``.
    dims: names of the categorical dimensions whose exact distinct counts are tracked.
    track_max: keep the structure that answers ``max(i)``.
    lateness: ms behind the end within which a late event counts as LATE_FAST.
    ids: store a 64-bit event id per event, reported by ``pop_expired`` when it leaves
        the widest window (for tombstoning persisted records).
    """

    horizons: tuple[int, ...]
    dims: tuple[str, ...] = ()
    track_max: bool = True
    lateness: int = 3_600_000
    ids: bool = False
    widest: int = field(init=False)
    widest_index: int = field(init=False)
    shortest: int = field(init=False)

    def __post_init__(self) -> None:
        hs = tuple(int(h) for h in self.horizons)
        if not hs or min(hs) <= 0:
            raise ValueError("horizons must be a non-empty sequence of positive ms")
        if self.lateness < 0:
            raise ValueError("lateness must be >= 0")
        dims = tuple(self.dims)
        if len(set(dims)) != len(dims):
            raise ValueError("dimension names must be unique")
        object.__setattr__(self, "horizons", hs)
        object.__setattr__(self, "dims", dims)
        object.__setattr__(self, "widest", max(hs))
        object.__setattr__(self, "widest_index", hs.index(max(hs)))
        object.__setattr__(self, "shortest", min(hs))
