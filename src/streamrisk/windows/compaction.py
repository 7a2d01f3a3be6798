"""Memory housekeeping of a sliding window: compact the evicted prefix, re-intern category tables."""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Hashable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streamrisk.windows.sliding import SlidingWindows

__all__ = ["compact"]


def compact(w: SlidingWindows, head: int) -> None:
    """Drop ``w``'s first ``head`` events (already outside every window) and rebase what indexes them."""
    del w._ts[:head]
    del w._val[:head]
    if w._eid is not None:
        del w._eid[:head]
    start = w._start
    for i in range(len(start)):
        start[i] -= head
    # Rebase the running totals so they stay the size of the window's content.
    wi = w.spec.widest_index
    out = w._out
    outsq = w._outsq
    m, msq = out[wi], outsq[wi]
    w._tot -= m
    w._totsq -= msq
    for i in range(len(out)):
        out[i] -= m
        outsq[i] -= msq
    stair = w._stair
    if stair is not None:
        stair[:] = [j - head for j in stair[bisect_left(stair, head) :]]
    for dim in w._dims:
        del dim[3][:head]
        if len(dim[1]) > 2 * dim[4][wi] + w.reintern_slack:
            _reintern(dim)


def _reintern(dim: tuple[dict, list, list[int], array, list[int]]) -> None:
    # Forget categories no longer held so the tables track live cardinality only.
    ids, names, last, col, _ = dim
    remap: dict[int, int] = {}
    new_names: list[Hashable] = []
    new_last: list[int] = []
    for c in col:
        if c not in remap:
            remap[c] = len(new_names)
            new_names.append(names[c])
            new_last.append(last[c])
    col[:] = array("i", [remap[c] for c in col])
    names[:] = new_names
    last[:] = new_last
    ids.clear()
    ids.update({name: c for c, name in enumerate(new_names)})
