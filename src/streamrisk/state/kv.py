"""The table seam: the key-value interface entity state is kept in (a Faust table with a changelog in
the worker, a dict in tests and offline runs), its key separator, and a right-sized copy for its values."""

from __future__ import annotations

from typing import Protocol

SEP = b"\x1f"


class KV(Protocol):
    """The table seam: a Faust table in the worker, a dict in unit tests."""

    def get(self, key: bytes) -> bytes | None: ...
    def put(self, partition: int, key: bytes, value: bytes) -> None: ...
    def delete(self, partition: int, key: bytes) -> None: ...


class DictKV:
    """A KV in a dict, with a list of what was written (for tests; `log=False` keeps none)."""

    def __init__(self, log: bool = True) -> None:
        self.data: dict[bytes, bytes] = {}
        self.writes: list[tuple[bytes, bytes | None]] = []
        self.log = log

    def contents(self) -> dict[bytes, bytes]:
        """The whole table, live (the background sweep walks its keys; sweep.py)."""
        return self.data

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self.data[key] = value
        if self.log:
            self.writes.append((key, value))

    def delete(self, partition: int, key: bytes) -> None:
        self.data.pop(key, None)
        if self.log:
            self.writes.append((key, None))


def packed(value: bytes) -> bytes:
    """A right-sized copy of orjson output for the table. orjson.dumps allocates about 4 KiB for its
    result whatever its length (measured with tracemalloc, orjson 3.x), so a table of millions of
    small meta records would hold gigabytes."""
    return bytes(memoryview(value))
