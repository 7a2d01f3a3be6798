"""Per-record failure isolation: a record whose processing raises is dead-lettered, not the batch.

An exception while processing one record (a bug, or input validation did not foresee) must never cost
the records around it their decisions. The processor catches it, drops what the record had added to the
batch's outputs, dead-letters the record with the exception named, and resets the touched entity to
what the table holds (Processor._isolate). This module words and logs such failures, boundedly: a
hostile stream that trips the same bug a million times must not flood the log.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

# Full tracebacks logged per exception type; after that one line per LOG_EVERY failures.
TRACEBACKS_PER_TYPE = 5
LOG_EVERY = 1000


class RecordFaults:
    """Counts and describes records whose processing raised."""

    __slots__ = ("by_type", "count")

    def __init__(self) -> None:
        self.count = 0
        self.by_type: dict[str, int] = {}

    def report(self, where: str, exc: BaseException) -> str:
        """Count and log one failure; returns the dead letter's reason (without its `where`)."""
        name = type(exc).__name__
        self.count += 1
        n = self.by_type[name] = self.by_type.get(name, 0) + 1
        text = str(exc)
        if len(text) > 200:  # an exception may quote the hostile value that caused it
            text = f"{text[:200]}... ({len(text)} chars)"
        reason = (
            f"processing failed with {name}: {text}. This is a StreamRisk bug, please "
            "report it with this record; the other records of the batch were processed"
        )
        if n <= TRACEBACKS_PER_TYPE:
            log.error("%s: %s", where, reason, exc_info=exc)
        elif n % LOG_EVERY == 0:
            log.error("%s: %s (%d records failed with %s so far)", where, reason, n, name)
        return reason
