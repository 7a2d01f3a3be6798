"""`streamrisk shadow-report`: how the shadow ruleset's would-be decisions differ from the live ones.

Each shadow record carries both sides (what the shadow would have done and what the live ruleset did
for the same payment, with the same features), so the report needs no join with `risk-decisions`.
Chargebacks read from their topic label the payments they name, whenever they arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import orjson

from ..core.topic_names import shadow_decisions_topic
from ..recording.record import read_to_end
from ..settings import Settings, SettingsError, _parse_windows
from .compare import Comparison, Tally
from .report import format_report, report_json


def build_comparison(shadow_records: list[dict[str, Any]], chargebacks: list[dict[str, Any]],
                     version: str | None = None, since_ts: int | None = None) -> Comparison:
    """Live vs shadow over the shadow records of `version` (default: the newest one's)."""
    if version is None and shadow_records:
        version = shadow_records[-1].get("rules_version")
    latest: dict[str, dict[str, Any]] = {}  # a payment decided again after a restart counts once
    for r in shadow_records:
        if r.get("rules_version") == version and (since_ts is None or r.get("ts", 0) >= since_ts):
            latest[r["event_id"]] = r
    live_versions = sorted({r.get("live_rules_version", "") for r in latest.values()})
    c = Comparison(Tally(version=", ".join(live_versions) or "-", alerts=None),
                   Tally(version=version or "-", alerts=None))
    for r in latest.values():
        live = {**r, "action": r["live_action"], "reasons": r["live_reasons"]}
        c.a.add_decision(r["event_id"], live["action"], live["reasons"])
        c.b.add_decision(r["event_id"], r["action"], r["reasons"])
        c.add_pair(live, r)
    for cb in chargebacks:
        pid = cb.get("payment_id")
        if isinstance(pid, str):
            c.add_chargeback(pid)
    return c


# Fields the report reads from a shadow record, and their JSON types.
_SHADOW_FIELDS: dict[str, type] = {
    "event_id": str, "rules_version": str, "live_rules_version": str, "action": str, "live_action": str,
    "reasons": list, "live_reasons": list, "ts": int,
}


def well_formed(record: dict[str, Any]) -> bool:
    """Whether a shadow record is as workers write it (rules/shadow.py), so the report can read it."""
    return all(type(record.get(name)) is kind for name, kind in _SHADOW_FIELDS.items()) and all(
        type(r) is str for r in (*record["reasons"], *record["live_reasons"])
    )


def _json_values(records: list[Any]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        try:
            v = orjson.loads(r.value or b"")
        except orjson.JSONDecodeError:
            continue  # malformed input is the worker's to dead-letter
        if isinstance(v, dict):
            out.append(v)
    return out


def run_shadow_report(args: argparse.Namespace, settings: Settings) -> int:
    if args.app_id:
        settings = settings.replace(app_id=args.app_id)
    since_ts = None
    try:
        if args.since:
            since_ts = int(time.time() * 1000) - next(iter(_parse_windows(args.since).values()))
    except SettingsError:
        print(f"streamrisk shadow-report: --since {args.since!r} is not a duration like 30m, 24h or 7d",
              file=sys.stderr)
        return 2
    t_shadow, t_cb = shadow_decisions_topic(settings), settings.topic("chargebacks")
    try:
        topics = asyncio.run(read_to_end(settings.bootstrap, [t_shadow, t_cb]))
    except LookupError as exc:
        print(f"streamrisk shadow-report: {exc}; has a worker with app id {settings.app_id!r} run "
              "on this broker?", file=sys.stderr)
        return 1
    read = _json_values(topics[t_shadow])
    shadow = [r for r in read if well_formed(r)]
    # The topic is internal, but anyone who can write to the broker can write to it.
    skipped = len(topics[t_shadow]) - len(shadow)
    if skipped:
        print(f"{skipped} record(s) on {t_shadow} are not shadow decisions as workers write them: "
              "left out of the report", file=sys.stderr)
    if not shadow:
        print(f"no shadow decisions on {t_shadow}: publish a ruleset with "
              "`streamrisk publish-rules FILE --mode shadow` first")
        return 1
    c = build_comparison(shadow, _json_values(topics[t_cb]), since_ts=since_ts)
    period = f"payments of the last {args.since}" if args.since else "all payments"
    print(f"shadow report ({period}; {c.compared} payments decided by both)")
    print(format_report(c, labels=("live", "shadow"), show_changes=args.show))
    if args.json:
        args.json.write_bytes(orjson.dumps(report_json(c, ("live", "shadow")), option=orjson.OPT_INDENT_2))
    return 0
