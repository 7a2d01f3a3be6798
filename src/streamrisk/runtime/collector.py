"""Keeps Python's cyclic garbage collector from pausing the worker to scan its whole state.

A worker holds its state as millions of small containers (windows, entities, indexes) that live for
hours and form no reference cycles. Python's full (generation 2) collection still walks every one of
them: measured on a worker at 1,000 payments/s, each full collection paused the event loop for 40-240
ms and freed nothing, and those pauses made the p99 of produce -> decision. (Objects without cycles are
freed by reference counting as soon as they are dropped, collector or not.)

So every `interval_s` the young generations are collected (a few milliseconds) and the objects that
survived are moved out of the collector's sight (`gc.freeze()`, a constant-time list splice): later
collections scan only what was allocated since, and automatic full collections are off (`start`). A
cycle among frozen objects that becomes garbage would stay in memory, so once per `full_interval_s`
everything is unfrozen and collected in one pass (the one long pause, and it is logged).
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


class Collector:
    """Called on a timer (app.py); `tick()` freezes survivors, or runs the rare full collection."""

    def __init__(self, full_interval_s: float = 3600.0) -> None:
        self.full_interval_s = full_interval_s
        self._thresholds: tuple[int, int, int] | None = None  # the process's, while started
        self._last_full = time.monotonic()
        self.freezes = 0
        self.full_collections = 0
        self.last_full_ms = 0.0

    def start(self) -> None:
        """No automatic full collections: right after a freeze the old generation is nearly empty, so
        Python's rule (a full pass once survivors outnumber a quarter of it) would run one every few
        hundred young collections, each over every survivor since the last freeze (measured: 40-100 ms
        at 1,000 payments/s). Survivors are frozen instead, and collected in `tick`'s full pass."""
        if self._thresholds is None:
            self._thresholds = gc.get_threshold()
        young, middle, _ = self._thresholds
        gc.set_threshold(young, middle, 1_000_000)

    def stop(self) -> None:
        """The thresholds as `start` found them (nothing, if it did not run)."""
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last_full >= self.full_interval_s:
            self._last_full = now
            gc.unfreeze()
            started = time.perf_counter()
            freed = gc.collect()
            self.last_full_ms = (time.perf_counter() - started) * 1000
            self.full_collections += 1
            log.info("full garbage collection: %d objects freed in %.0f ms", freed, self.last_full_ms)
        else:
            gc.collect(1)  # young garbage first: what is frozen is never looked at again
        gc.freeze()
        self.freezes += 1

    def stats(self) -> dict[str, float | int]:
        return {
            "gc_frozen_objects": gc.get_freeze_count(),
            "gc_full_collections": self.full_collections,
            "gc_last_full_ms": round(self.last_full_ms, 1),
        }
