"""The load generator's labelled scenario traffic written as a recording, offline (no broker).

The same traffic `streamrisk demo` sends (ScenarioTraffic with the demo's defaults: 2000 users, 200
merchants, 7 days of event time, the default scenario mix, seed 7), `--events` records of it, as
`streamrisk record` would have written them: one JSON line per record, record time = event time. Malformed
records are left out (the worker would dead-letter them; nothing to compare). Labels go beside it.

Run: .venv/bin/python scripts/scenario_recording.py --out demo.jsonl [--events 9000] [--days 7]
then: streamrisk backtest demo.jsonl --rules src/streamrisk/rules/default.yaml \
          --policy src/streamrisk/credit/static_policy.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson

from streamrisk.loadgen.scenarios import ScenarioTraffic, parse_mix
from streamrisk.loadgen.synthetic import Record

END_MS = 1_796_601_600_000  # 2026-12-07 00:00 UTC: a fixed end, so the same arguments give the same file


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="the recording (JSON Lines)")
    ap.add_argument("--events", type=int, default=9000, help="records generated (demo: 300/s x 30 s = 9000)")
    ap.add_argument("--days", type=float, default=7.0, help="days of event time covered (demo: 7)")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--merchants", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--scenario-mix", help="as the demo's --scenario-mix (default: its default mix)")
    args = ap.parse_args()
    t = ScenarioTraffic(args.users, args.merchants, end_ms=END_MS, days=args.days,
                        mix=parse_mix(args.scenario_mix), seed=args.seed, run_id=f"rec{args.seed}")
    written = 0
    with args.out.open("wb") as fh:
        for i in range(args.events):
            r = t.next(i / args.events)
            if isinstance(r, Record):
                fh.write(orjson.dumps({"topic": r.topic, "key": r.key, "value": r.value,
                                       "timestamp": r.value["ts"]}) + b"\n")
                written += 1
    labels = args.out.with_suffix(".labels.jsonl")
    labels.write_bytes(b"".join(orjson.dumps(lab.as_dict()) + b"\n" for lab in t.labels))
    print(f"wrote {written} records ({args.days:g} days of event time) to {args.out}, labels to {labels}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
