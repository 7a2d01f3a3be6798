"""Held events as persisted: one JSON-array line per event, appended to an entity's chunks (store.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import orjson

_NEWLINE = orjson.OPT_APPEND_NEWLINE


@dataclass(slots=True)
class HeldEvent:
    """One event as persisted: enough to replay it into the entity's windows."""

    event_id: str
    series: int
    ts: int
    value: int
    cats: tuple[str, ...] = ()

    def encode(self) -> bytes:
        """One chunk line: a JSON array [event_id, series, ts, value, *cats] and a newline."""
        return orjson.dumps([self.event_id, self.series, self.ts, self.value, *self.cats], option=_NEWLINE)

    @staticmethod
    def decode_chunk(blob: bytes) -> Iterator[HeldEvent]:
        """The events of a chunk, in the order they were appended."""
        for eid, series, ts, value, *cats in chunk_rows(blob):
            yield HeldEvent(eid, series, ts, value, tuple(cats))


def chunk_rows(blob: bytes) -> list[list]:
    """A chunk's lines as raw [event_id, series, ts, value, *cats] lists, in append order."""
    # One orjson call per chunk instead of one per line (the bulk of a rebuild's decode time):
    # JSON escapes newlines inside strings, so a raw b"\n" only ever ends a line, and the lines
    # joined by "," form one JSON array. `encode` never writes an empty line.
    body = blob.rstrip(b"\n")
    return orjson.loads(b"[" + body.replace(b"\n", b",") + b"]") if body else []


def newest_ts(blob: bytes | None) -> int:
    """The newest event time in a chunk; -1 for none."""
    return max((row[2] for row in chunk_rows(blob)), default=-1) if blob else -1
