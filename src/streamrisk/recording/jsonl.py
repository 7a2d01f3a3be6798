"""The recording format: one JSON object per line, `{"topic", "key", "value"}` as CONTRACT.md says.

Recorded lines add optional fields: `timestamp` (the Kafka record time, epoch ms: when the record was
produced, which a backtest uses as its clock), `partition` and `offset`. A value that is not a JSON
object (a malformed record, kept so a backtest sees it as the worker did) is carried as a string in
`value_raw`, or base64 in `value_b64` when it is not UTF-8.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson


class RecordingError(ValueError):
    """A line that is not a recorded record; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """One record of a recording. `topic` is the contract name, without the deployment prefix."""

    topic: str
    key: str | None
    value: bytes | None  # the record's bytes, exactly as they were on the topic
    timestamp: int | None = None
    partition: int | None = None
    offset: int | None = None

    def event_ts(self) -> int | None:
        """The value's `ts` when it is a JSON object with an integer one (malformed input has none)."""
        if self.value is not None and self.value[:1] == b"{":
            try:
                ts = orjson.loads(self.value).get("ts")
            except orjson.JSONDecodeError:
                return None
            if type(ts) is int:
                return ts
        return None

    def to_line(self) -> bytes:
        obj: dict[str, Any] = {"topic": self.topic, "key": self.key}
        if self.value is None:
            obj["value"] = None
        else:
            try:
                parsed = orjson.loads(self.value)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                # The original bytes when they fit on one line (no reformatting), else re-encoded.
                one_line = b"\n" not in self.value and b"\r" not in self.value
                obj["value"] = orjson.Fragment(self.value) if one_line else parsed
            else:
                try:
                    obj["value_raw"] = self.value.decode("utf-8")
                except UnicodeDecodeError:
                    obj["value_b64"] = base64.b64encode(self.value).decode("ascii")
        for name in ("timestamp", "partition", "offset"):
            v = getattr(self, name)
            if v is not None:
                obj[name] = v
        return orjson.dumps(obj) + b"\n"


def parse_line(line: bytes, where: str) -> Recorded:
    """One line of a recording; RecordingError names `where` (file:line) and what is wrong."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise RecordingError(f"{where}: not JSON ({exc})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("topic"), str):
        raise RecordingError(f'{where}: expected an object with "topic", "key" and "value"')
    key = obj.get("key")
    if key is not None and not isinstance(key, str):
        key = str(key)
    if "value" in obj:
        v = obj["value"]
        value = None if v is None else orjson.dumps(v)
    elif "value_raw" in obj:
        value = str(obj["value_raw"]).encode("utf-8")
    elif "value_b64" in obj:
        try:
            value = base64.b64decode(obj["value_b64"], validate=True)
        except (ValueError, TypeError):
            raise RecordingError(f"{where}: value_b64 is not base64") from None
    else:
        raise RecordingError(f'{where}: no "value" (nor value_raw / value_b64)')
    ints = {}
    for name in ("timestamp", "partition", "offset"):
        v = obj.get(name)
        if v is not None and type(v) is not int:
            raise RecordingError(f"{where}: {name} must be an integer (got {v!r})")
        ints[name] = v
    return Recorded(obj["topic"], key, value, **ints)


def check_recording(path: Path) -> None:
    """RecordingError, saying how to make one, unless `path` is a file (read_recording reads lazily)."""
    if not path.is_file():
        raise RecordingError(f"recording {path} does not exist (make one with "
                             "`streamrisk record --out FILE`)")


def read_recording(path: Path) -> Iterator[Recorded]:
    """Every record of a recording file, in file order; blank lines are skipped."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise RecordingError(f"cannot read recording {path}: {exc.strerror}") from None
    with fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                yield parse_line(line, f"{path}:{n}")


def write_records(fh: IO[bytes], records: list[Recorded]) -> None:
    fh.write(b"".join(r.to_line() for r in records))
