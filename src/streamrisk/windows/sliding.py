"""Exact multi-horizon event-time sliding windows over one key's stream of events.

Pure Python: parallel ``array`` columns sorted by event time, O(1) amortized updates.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Hashable, Iterable, Iterator, Sequence
from operator import itemgetter, mul

from streamrisk.windows.compaction import reintern
from streamrisk.windows.spec import NEVER, NO_EXPIRY, AddPath, Event, WindowSpec

__all__ = ["SlidingWindows"]

_IN_ORDER, _LATE_FAST, _LATE_SLOW, _TOO_OLD = AddPath


class SlidingWindows:
    """Count, sum, mean, std, max and distinct counts of one series over several horizons.

    The window for horizon ``H`` covers events with ``end - H < ts <= end``: an event
    leaves it exactly when the end reaches ``ts + H``. ``end`` is the latest event time
    added or the time given to ``advance``, whichever is later; it never moves back.

    Events are held in parallel columns sorted by (ts, arrival order); each horizon's
    window is a suffix of them, tracked by a start index, with exact int sum and sum of
    squares updated on insert/evict. Max uses one suffix-maximum staircase shared by all
    horizons; distinct counts use one category -> latest-ts table per dimension.
    Not thread-safe; one instance per key and series.
    """

    __slots__ = (
        "_bounds",
        "_bounds_at",
        "_dims",
        "_eid",
        "_end",
        "_expired",
        "_inner",
        "_next",
        "_out",
        "_outsq",
        "_paths",
        "_stair",
        "_start",
        "_tot",
        "_totsq",
        "_ts",
        "_val",
        "spec",
    )

    # Dead prefix length that triggers compaction (also needs dead >= live): bounds the
    # memory of evicted events at ~2x the live ones while keeping the memmove amortized.
    trim_min: int = 1024
    # Category tables are rebuilt at compaction once they exceed 2 * live + this.
    reintern_slack: int = 64

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        k = len(spec.horizons)
        self._end: int | None = None
        # end - horizon per window, and end - shortest horizon (inside every window above it).
        self._bounds: list[int] = []
        self._bounds_at: int | None = None  # the end _bounds were computed for (see _fresh_bounds)
        self._inner = 0
        # No event leaves any window before the end reaches this (a lower bound): moving the end
        # short of it touches no window, which is what most moves do (features advance every series).
        self._next = NO_EXPIRY
        self._ts = array("q")
        self._val = array("q")
        self._eid = array("q") if spec.ids else None
        self._start = [0] * k
        # Window i's sum is _tot - _out[i]: an in-order event then touches two ints, not k.
        # _out[i] totals the held-or-evicted events outside window i (rebased at compaction).
        self._tot = 0
        self._totsq = 0
        self._out = [0] * k
        self._outsq = [0] * k
        # Per dimension: (intern dict, id -> category, id -> latest ts, id column,
        # distinct count per window). Mutated in place, so the tuple stays valid.
        self._dims: list[tuple[dict, list, list[int], array, list[int]]] = [
            ({}, [], [], array("i"), [0] * k) for _ in spec.dims
        ]
        # Indices j (ascending) with val[j] > every value after j; values strictly decrease.
        self._stair: list[int] | None = [] if spec.track_max else None
        self._expired = array("q") if spec.ids else None
        self._paths = [0, 0, 0, 0]

    # ------------------------------------------------------------------ queries

    @property
    def end(self) -> int | None:
        """Current window end (ms), None before the first event or advance."""
        return self._end

    @property
    def horizons(self) -> tuple[int, ...]:
        """Horizon lengths in ms, in the order used by the ``i`` of queries."""
        return self.spec.horizons

    @property
    def dims(self) -> tuple[str, ...]:
        """Names of the tracked categorical dimensions."""
        return self.spec.dims

    def __len__(self) -> int:
        """Number of held events (those inside the widest window)."""
        return len(self._ts) - self._start[self.spec.widest_index]

    def count(self, i: int) -> int:
        """Number of events in window ``i``."""
        return len(self._ts) - self._start[i]

    def sum(self, i: int) -> int:
        """Exact sum of values in window ``i`` (0 when empty)."""
        return self._tot - self._out[i]

    def mean(self, i: int) -> float:
        """Mean value in window ``i`` (0.0 when empty)."""
        n = len(self._ts) - self._start[i]
        return (self._tot - self._out[i]) / n if n else 0.0

    def std(self, i: int) -> float:
        """Population standard deviation in window ``i`` (0.0 when empty)."""
        n = len(self._ts) - self._start[i]
        if n < 2:
            return 0.0
        s = self._tot - self._out[i]
        # Exact int numerator n^2 * var, so no cancellation before the single rounding.
        return math.sqrt(n * (self._totsq - self._outsq[i]) - s * s) / n

    def moments(self, i: int) -> tuple[int, int, float, float]:
        """count(i), sum(i), mean(i) and std(i) in one call (features read them together)."""
        n = len(self._ts) - self._start[i]
        s = self._tot - self._out[i]
        if n < 2:
            return n, s, (s / n if n else 0.0), 0.0
        return n, s, s / n, math.sqrt(n * (self._totsq - self._outsq[i]) - s * s) / n

    def counts(self) -> list[int]:
        """count(i) of every window, in horizon order."""
        n = len(self._ts)
        return [n - s for s in self._start]

    def sums(self) -> list[int]:
        """sum(i) of every window, in horizon order."""
        tot = self._tot
        return [tot - o for o in self._out]

    def distincts(self, dim: int) -> list[int]:
        """distinct(i, dim) of every window, in horizon order (a fresh list)."""
        return list(self._dims[dim][4])

    def max(self, i: int) -> int | None:
        """Largest value in window ``i``, None when empty (values may be <= 0)."""
        stair = self._stair
        if stair is None:
            raise ValueError("max is not tracked by this WindowSpec (track_max=False)")
        s = self._start[i]
        if s >= len(self._ts):
            return None
        return self._val[stair[bisect_left(stair, s)]]

    def distinct(self, i: int, dim: int | str) -> int:
        """Exact count of distinct categories of ``dim`` (index or name) in window ``i``."""
        if dim.__class__ is str:
            dim = self.spec.dims.index(dim)
        return self._dims[dim][4][i]

    def last_seen(self, dim: int, category: Hashable) -> int | None:
        """Latest event time of ``category`` among held events, None if it was never held.

        May also answer for a category whose events already left the widest window (its
        table entry lives until the next compaction), so compare the result with a bound.
        """
        d = self._dims[dim]
        c = d[0].get(category)
        return None if c is None else d[2][c]

    def sum_sq(self, i: int) -> int:
        """Exact sum of squared values in window ``i``."""
        return self._totsq - self._outsq[i]

    @property
    def path_counts(self) -> dict[AddPath, int]:
        """How many ``add`` calls took each path since construction (or rebuild)."""
        return dict(zip(AddPath, self._paths, strict=True))

    def events(self) -> Iterator[Event]:
        """Held events as (ts, value, cats, eid) in (ts, arrival) order; eid 0 without ids."""
        lo = self._start[self.spec.widest_index]
        tsa, val, eid = self._ts, self._val, self._eid
        cols = [(col, names) for _, names, _, col, _ in self._dims]
        for j in range(lo, len(tsa)):
            cats = tuple([names[col[j]] for col, names in cols])
            yield (tsa[j], val[j], cats, eid[j] if eid is not None else 0)

    def pop_expired(self) -> list[int]:
        """Ids of events that left the widest window since the last call (needs ids=True).

        Also includes ids of events dropped as already expired by ``from_events``. Events
        rejected as TOO_OLD by ``add`` are never held, so never reported.
        """
        exp = self._expired
        if exp is None:
            raise ValueError("event ids are not tracked by this WindowSpec (ids=False)")
        out = exp.tolist()
        del exp[:]
        return out

    # ------------------------------------------------------------------ updates

    def advance(self, t: int) -> None:
        """Move the end to ``t`` (no-op if ``t`` <= end), evicting what falls out."""
        if self._end is None or t > self._end:
            self._move_end(t)

    def add(self, ts: int, value: int, cats: Sequence[Hashable] = (), eid: int = 0) -> AddPath:
        """Apply one event; ``cats`` has one category per dimension of the spec.

        ``value`` and ``ts`` must fit in int64; ``eid`` (int64) is kept only with ids=True.
        Duplicates are not detected: each call is a distinct event.
        """
        dims = self._dims
        if len(cats) != len(dims):
            raise ValueError(f"expected {len(dims)} categories, got {len(cats)}")
        end = self._end
        tsa = self._ts
        val = self._val
        eida = self._eid
        vv = value * value
        self._tot += value
        self._totsq += vv

        if end is None or ts >= end:
            # Fast path: append at the end; the event is inside every window.
            if end is None or ts > end:
                self._move_end(ts)
            pos = len(tsa)
            tsa.append(ts)
            val.append(value)
            if eida is not None:
                eida.append(eid)
            # It may be the first event of a window: it leaves that one no sooner than this.
            expiry = ts + self.spec.shortest
            if expiry < self._next:
                self._next = expiry
            inner = self._inner
            for (ids, names, last, col, dist), cat in zip(dims, cats, strict=True):
                c = ids.get(cat)
                if c is None:
                    c = ids[cat] = len(last)
                    names.append(cat)
                    last.append(NEVER)
                col.append(c)
                lc = last[c]
                # New to window i iff its latest occurrence so far is outside it.
                if lc <= inner:
                    for i, b in enumerate(self._fresh_bounds()):
                        if lc <= b:
                            dist[i] += 1
                last[c] = ts
            stair = self._stair
            if stair is not None:
                while stair and val[stair[-1]] <= value:
                    stair.pop()
                stair.append(pos)
            self._paths[0] += 1
            return _IN_ORDER

        spec = self.spec
        if ts <= end - spec.widest:
            self._tot -= value
            self._totsq -= vv
            self._paths[3] += 1
            return _TOO_OLD
        path = _LATE_FAST if ts >= end - spec.lateness else _LATE_SLOW
        # Insert after events of equal ts (arrival order), so each window stays a suffix.
        pos = bisect_right(tsa, ts, self._start[spec.widest_index])
        tsa.insert(pos, ts)
        val.insert(pos, value)
        if eida is not None:
            eida.insert(pos, eid)
        if ts + spec.shortest < self._next:
            self._next = ts + spec.shortest
        bounds = self._fresh_bounds()
        start = self._start
        out = self._out
        outsq = self._outsq
        for i, b in enumerate(bounds):
            if ts <= b:
                # Lands before window i's first event: outside it, and shifts its start.
                start[i] += 1
                out[i] += value
                outsq[i] += vv
        for (ids, names, last, col, dist), cat in zip(dims, cats, strict=True):
            c = ids.get(cat)
            if c is None:
                c = ids[cat] = len(last)
                names.append(cat)
                last.append(NEVER)
            col.insert(pos, c)
            lc = last[c]
            for i, b in enumerate(bounds):
                if ts > b and lc <= b:
                    dist[i] += 1
            if ts > lc:
                last[c] = ts
        stair = self._stair
        if stair is not None:
            k = bisect_left(stair, pos)
            for j in range(k, len(stair)):
                stair[j] += 1
            # The new element is a suffix maximum iff it beats the max after it.
            if k == len(stair) or value > val[stair[k]]:
                j = k
                while j > 0 and val[stair[j - 1]] <= value:
                    j -= 1
                stair[j:k] = [pos]
        self._paths[path] += 1
        return path

    def _set_end(self, t: int) -> None:
        self._end = t
        self._bounds = [t - h for h in self.spec.horizons]
        self._bounds_at = t
        self._inner = t - self.spec.shortest
        self._next = NEVER  # unknown: the next move looks at every window

    def _fresh_bounds(self) -> list[int]:
        """end - horizon per window (a move short of `_next` leaves them stale)."""
        end = self._end
        if self._bounds_at != end:
            self._bounds = [end - h for h in self.spec.horizons]
            self._bounds_at = end
        return self._bounds

    def _move_end(self, t: int) -> None:
        self._end = t
        self._inner = t - self.spec.shortest
        if t < self._next:
            return  # nothing leaves any window yet
        bounds = self._bounds
        if not bounds:
            bounds.extend(self.spec.horizons)
        self._bounds_at = t
        nxt = NO_EXPIRY
        tsa = self._ts
        val = self._val
        n = len(tsa)
        start = self._start
        out = self._out
        outsq = self._outsq
        dims = self._dims
        wi = self.spec.widest_index
        for i, h in enumerate(self.spec.horizons):
            b = bounds[i] = t - h
            s = start[i]
            if s >= n:
                continue
            if tsa[s] > b:  # its first event leaves when the end reaches tsa[s] + h
                if tsa[s] + h < nxt:
                    nxt = tsa[s] + h
                continue
            e = s + 1
            if e < n and tsa[e] <= b:
                e = bisect_right(tsa, b, e, n)
            if e - s == 1:
                v = val[s]
                out[i] += v
                outsq[i] += v * v
                x = tsa[s]
                for _, _, last, col, dist in dims:
                    if last[col[s]] == x:
                        dist[i] -= 1
                if i == wi and self._expired is not None:
                    self._expired.append(self._eid[s])
            else:
                if e - s <= 8:
                    o = osq = 0
                    for v in val[s:e]:
                        o += v
                        osq += v * v
                    out[i] += o
                    outsq[i] += osq
                else:
                    seg = val[s:e]
                    out[i] += sum(seg)
                    outsq[i] += sum(map(mul, seg, seg))
                if dims:
                    tseg = tsa[s:e]
                    for _, _, last, col, dist in dims:
                        # A category leaves when its latest occurrence leaves; several
                        # events of it may share that ts, so count each category once.
                        gone = [c for c, x in zip(col[s:e], tseg, strict=True) if last[c] == x]
                        dist[i] -= len(set(gone)) if len(gone) > 1 else len(gone)
                if i == wi and self._expired is not None:
                    self._expired.extend(self._eid[s:e])
            start[i] = e
            if e < n and tsa[e] + h < nxt:
                nxt = tsa[e] + h
        self._next = nxt
        head = start[wi]
        if head >= self.trim_min and 2 * head >= n:
            self._compact(head)

    def _compact(self, head: int) -> None:
        """Drop the first ``head`` events (already outside every window) and rebase what indexes them."""
        del self._ts[:head]
        del self._val[:head]
        if self._eid is not None:
            del self._eid[:head]
        start = self._start
        for i in range(len(start)):
            start[i] -= head
        # Rebase the running totals so they stay the size of the window's content.
        wi = self.spec.widest_index
        out = self._out
        outsq = self._outsq
        m, msq = out[wi], outsq[wi]
        self._tot -= m
        self._totsq -= msq
        for i in range(len(out)):
            out[i] -= m
            outsq[i] -= msq
        stair = self._stair
        if stair is not None:
            stair[:] = [j - head for j in stair[bisect_left(stair, head) :]]
        for dim in self._dims:
            del dim[3][:head]
            if len(dim[1]) > 2 * dim[4][wi] + self.reintern_slack:
                reintern(dim)

    # ------------------------------------------------------------------ rebuild

    @classmethod
    def from_events(
        cls,
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
