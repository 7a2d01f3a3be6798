"""Brute-force reference for SlidingWindows: keeps every accepted event, recomputes on query."""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable

from streamrisk.windows import AddPath, SlidingWindows, WindowSpec


class Oracle:
    """Recomputes each aggregate from the list of accepted events; no cleverness at all."""

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self.end: int | None = None
        self.accepted: list[tuple[int, int, tuple[Hashable, ...], int]] = []
        self.paths = dict.fromkeys(AddPath, 0)

    def add(self, ts: int, value: int, cats: tuple[Hashable, ...], eid: int = 0) -> AddPath:
        end = self.end
        if end is None or ts >= end:
            path = AddPath.IN_ORDER
        elif ts <= end - self.spec.widest:
            path = AddPath.TOO_OLD
        elif ts >= end - self.spec.lateness:
            path = AddPath.LATE_FAST
        else:
            path = AddPath.LATE_SLOW
        self.paths[path] += 1
        if path is not AddPath.TOO_OLD:
            self.accepted.append((ts, value, tuple(cats), eid if self.spec.ids else 0))
            self.end = ts if end is None else max(end, ts)
        return path

    def advance(self, t: int) -> None:
        self.end = t if self.end is None else max(self.end, t)

    def window(self, i: int) -> list[tuple[int, int, tuple[Hashable, ...], int]]:
        if self.end is None:
            return []
        lo = self.end - self.spec.horizons[i]
        # sorted() is stable: equal ts keep arrival order, like the window's columns.
        return [e for e in sorted(self.accepted, key=lambda e: e[0]) if lo < e[0] <= self.end]

    def held(self) -> list[tuple[int, int, tuple[Hashable, ...], int]]:
        return self.window(self.spec.widest_index)

    def expired_ids(self) -> list[int]:
        held = {id(e) for e in self.held()}
        return sorted(e[3] for e in self.accepted if id(e) not in held)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def assert_matches(w: SlidingWindows, o: Oracle, *, check_paths: bool = True) -> None:
    """Every aggregate on every horizon of ``w`` equals the oracle's recomputation."""
    spec = o.spec
    assert w.end == o.end
    held = o.held()
    assert len(w) == len(held)
    assert list(w.events()) == held
    for i in range(len(spec.horizons)):
        win = o.window(i)
        vals = [e[1] for e in win]
        ctx = (i, vals)
        assert w.count(i) == len(vals), ctx
        assert w.sum(i) == sum(vals), ctx
        assert w.sum_sq(i) == sum(v * v for v in vals), ctx
        assert close(w.mean(i), statistics.fmean(vals) if vals else 0.0), ctx
        assert close(w.std(i), statistics.pstdev(vals) if vals else 0.0), ctx
        if spec.track_max:
            assert w.max(i) == (max(vals) if vals else None), ctx
        for d, name in enumerate(spec.dims):
            want = len({e[2][d] for e in win})
            assert w.distinct(i, d) == want, (ctx, name)
            assert w.distinct(i, name) == want
            assert w.distincts(d)[i] == want
        # The bulk reads give exactly what the per-window reads give.
        assert w.moments(i) == (w.count(i), w.sum(i), w.mean(i), w.std(i)), ctx
        assert w.counts()[i] == w.count(i) and w.sums()[i] == w.sum(i), ctx
    if check_paths:
        assert w.path_counts == o.paths
