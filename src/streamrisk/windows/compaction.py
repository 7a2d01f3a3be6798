"""Memory housekeeping of a sliding window's category tables: forget categories no longer held."""

from __future__ import annotations

from array import array
from collections.abc import Hashable

__all__ = ["reintern"]


def reintern(dim: tuple[dict, list, list[int], array, list[int]]) -> None:
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
