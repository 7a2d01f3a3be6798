"""Bulk rebuild of a sliding window from a list of events, as after a restore from the changelog."""

from __future__ import annotations

from array import array
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from operator import itemgetter, mul
from typing import TYPE_CHECKING

from streamrisk.windows.spec import NEVER, WindowSpec

if TYPE_CHECKING:
    from streamrisk.windows.sliding import SlidingWindows

__all__ = ["from_events"]


def from_events(
    cls: type[SlidingWindows],
    spec: WindowSpec,
    events: Iterable[Sequence],
    end: int | None = None,
) -> SlidingWindows:
    """Rebuild a window from events (ts, value, cats[, eid]) in any order.

    Equal to adding them one by one in (ts, input) order and then ``advance(end)``.
    Events already outside the widest window are dropped (their ids, with ids=True,
    go to ``pop_expired`` so their records can be tombstoned). Path counters start at 0.
    """
    w = cls(spec)
    evs = sorted(events, key=itemgetter(0))
    if not evs:
        if end is not None:
            w._set_end(end)
        return w
    tsl = [e[0] for e in evs]
    if end is None or end < tsl[-1]:
        end = tsl[-1]
    lo = bisect_right(tsl, end - spec.widest)
    w._set_end(end)
    if spec.ids:
        w._expired.extend([e[3] if len(e) > 3 else 0 for e in evs[:lo]])
        w._eid = array("q", [e[3] if len(e) > 3 else 0 for e in evs[lo:]])
    del evs[:lo]
    tsa = w._ts = array("q", tsl[lo:])
    del tsl
    val = w._val = array("q", [e[1] for e in evs])
    n = len(tsa)

    for d, (ids, names, last, col, dist) in enumerate(w._dims):
        intern = ids.setdefault
        col.extend(array("i", [intern(e[2][d], len(ids)) for e in evs]))
        names.extend(ids)
        last.extend([NEVER] * len(names))
        # ts ascending, so the final write per category is its latest occurrence.
        for c, t in zip(col, tsa, strict=True):
            last[c] = t
        for i, b in enumerate(w._bounds):
            dist[i] = sum(1 for x in last if x > b)
    del evs

    w._tot = sum(val)
    w._totsq = sum(map(mul, val, val))
    for i, b in enumerate(w._bounds):
        s = bisect_right(tsa, b)
        seg = val[:s]
        w._start[i] = s
        w._out[i] = sum(seg)
        w._outsq[i] = sum(map(mul, seg, seg))

    if spec.track_max:
        stair = w._stair
        best = None
        for j in range(n - 1, -1, -1):
            v = val[j]
            if best is None or v > best:
                stair.append(j)
                best = v
        stair.reverse()
    return w
