"""An analyst's resolution of a review case: the control event on `{prefix}{app_id}-reviews`.

`POST /reviews/{payment_id}` checks a resolution and produces it as one record, keyed by the payment's
`user_id`, on the internal topic `{prefix}{app_id}-reviews` (as many partitions as the input topics).
So it reaches the worker that owns the user's partition, which applies it in its batch loop, in order
with the user's payments, through the same path (validation, dead letters, state in the table). The
record:

    {"control_id": str, "user_id": str, "payment_id": str, "resolution": "approve" | "fraud",
     "analyst": str, "note": str, "action": null | "freeze" | "unfreeze" | "set_limit",
     "limit": number | null (major units, set_limit only), "ts": epoch ms (when it was resolved)}

The topic is also where labels come from: `streamrisk train` reads it from a recording
(training/labels.py, `analyst_labels`).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any

from .events import MINOR_PER_MAJOR, InvalidRecord, Validator, check_id, shown, to_major, to_minor

RESOLUTIONS = frozenset({"approve", "fraud"})
ACTIONS = frozenset({"freeze", "unfreeze", "set_limit"})
NOTE_MAX_CHARS = 2000
ANALYST_MAX_CHARS = 256
FIELDS = ("control_id", "user_id", "payment_id", "resolution", "analyst", "note", "action", "limit", "ts")


@dataclass(frozen=True, slots=True)
class Resolution:
    control_id: str
    user_id: str
    payment_id: str
    resolution: str
    analyst: str
    note: str
    action: str | None
    limit: int | None  # minor units (set_limit)
    ts: int

    def audit_entry(self) -> dict[str, Any]:
        """How the case's audit trail keeps it (state/reviews.py)."""
        return {
            "control_id": self.control_id, "analyst": self.analyst, "resolution": self.resolution,
            "note": self.note, "action": self.action,
            "limit": None if self.limit is None else to_major(self.limit), "resolved_at": self.ts,
        }


def parse_resolution(v: Validator, key: bytes | None, value: bytes | None, now_ms: int) -> Resolution:
    """A resolution record, or InvalidRecord naming what is wrong."""
    d = v.json_value(key, value, "a review resolution")
    if type(d) is not dict:
        raise InvalidRecord(f"value must be a JSON object (got {type(d).__name__})")
    return resolution_of(d, v, key, now_ms)


def resolution_of(d: dict[str, Any], v: Validator, key: bytes | None, now_ms: int) -> Resolution:
    """`d` checked as a resolution (the POST's body checks the same, without `control_id` and `ts`)."""
    unknown = sorted(set(d) - set(FIELDS))
    if unknown:
        raise InvalidRecord(f"unknown field(s) {', '.join(map(repr, unknown))} (fields: {', '.join(FIELDS)})")
    for name in ("control_id", "user_id", "payment_id", "resolution", "analyst", "ts"):
        if name not in d:
            raise InvalidRecord(f"missing required field {name!r}")
    resolution = d["resolution"]
    if resolution not in RESOLUTIONS:
        raise InvalidRecord(f"resolution must be one of approve, fraud (got {shown(resolution)})")
    analyst = check_id("analyst", d["analyst"])
    if len(analyst) > ANALYST_MAX_CHARS:
        raise InvalidRecord(f"analyst must be at most {ANALYST_MAX_CHARS} characters")
    note = d.get("note", "")
    if note is None:
        note = ""
    if type(note) is not str or len(note) > NOTE_MAX_CHARS:
        raise InvalidRecord(
            f"note must be a string of at most {NOTE_MAX_CHARS} characters (got {shown(note)})"
        )
    action = d.get("action")
    if action is not None and action not in ACTIONS:
        raise InvalidRecord(
            f"action must be one of freeze, unfreeze, set_limit or null (got {shown(action)})"
        )
    raw_limit = d.get("limit")
    limit = None
    if action == "set_limit":
        if type(raw_limit) not in (int, float) or not math.isfinite(raw_limit) or raw_limit < 0:
            raise InvalidRecord(f"limit must be a number >= 0 with action set_limit (got {shown(raw_limit)})")
        if raw_limit * MINOR_PER_MAJOR > v.max_amount_minor:  # before to_minor: 1e308 * 100 is inf
            raise InvalidRecord(f"limit must be at most the largest amount accepted (got {shown(raw_limit)})")
        limit = to_minor(raw_limit)
    elif raw_limit is not None:
        raise InvalidRecord("limit is only taken with action set_limit")
    r = Resolution(
        control_id=check_id("control_id", d["control_id"]),
        user_id=check_id("user_id", d["user_id"]),
        payment_id=check_id("payment_id", d["payment_id"]),
        resolution=resolution, analyst=analyst, note=note, action=action, limit=limit,
        ts=v.event_time("ts", d["ts"], now_ms, future_ok=True),
    )
    if key is None or key != r.user_id.encode():
        raise InvalidRecord(f"message key must be the record's user_id {shown(r.user_id)} (got {shown(key)})")
    return r


def resolution_record(body: dict[str, Any], payment_id: str, now_ms: int) -> dict[str, Any]:
    """The control record for a POST's body: a fresh `control_id`, the path's payment and the time."""
    return {
        "control_id": uuid.uuid4().hex, "user_id": body.get("user_id"), "payment_id": payment_id,
        "resolution": body.get("resolution"), "analyst": body.get("analyst"), "note": body.get("note", ""),
        "action": body.get("action"), "limit": body.get("limit"), "ts": now_ms,
    }
