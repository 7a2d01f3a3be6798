"""`streamrisk backtest` speed against real time, on demo traffic written as a recording.

Writes a recording of `--minutes` of the demo's traffic (300 events/s, its mix of bursts and malformed
records, record time = event time), then backtests a candidate ruleset (the default with tighter
velocity limits) against the default over it: both rulesets, the whole core, one process. Prints the
record time covered per second of backtest (target: >= 20x real time), and, as a baseline measured in
the same run, the worker's core alone over the same file (one ruleset, nothing compared).

Run: .venv/bin/python scripts/bench_backtest.py [--minutes 60] [--rate 300]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import orjson
from _bench import report  # scripts/_bench.py

from streamrisk.backtest.offline import run_backtest
from streamrisk.loadgen.synthetic import Mix, Record, Traffic
from streamrisk.recording.jsonl import Recorded, read_recording, write_records
from streamrisk.rules import default_ruleset, load_ruleset
from streamrisk.settings import Settings


def write_demo_recording(path: Path, minutes: float, rate: float, t0: int) -> int:
    """The demo's traffic (streamrisk demo defaults) as a recording; returns the record count."""
    traffic = Traffic(2000, 200, seed=7, mix=Mix(malformed=0.002, bursts=0.002), run_id="bt")
    n = int(minutes * 60 * rate)
    step = 1000.0 / rate
    with path.open("wb") as fh:
        chunk: list[Recorded] = []
        for i in range(n):
            ts = t0 + int(i * step)
            rec = traffic.next(ts)
            if isinstance(rec, Record):
                topic, key, value = rec.topic, rec.key, orjson.dumps(rec.value)
            else:  # a deliberately malformed record: (topic, key, raw bytes)
                topic, key, value = rec
            chunk.append(Recorded(topic, key, value, ts))
            if len(chunk) >= 10_000:
                write_records(fh, chunk)
                chunk.clear()
        write_records(fh, chunk)
    return n


def candidate_ruleset():
    raw = default_ruleset().to_mapping()
    raw["version"] = "candidate-tight-velocity"
    raw["params"] = {**raw.get("params", {})}
    for k in list(raw["params"]):
        if "velocity" in k and isinstance(raw["params"][k], int | float):
            raw["params"][k] = raw["params"][k] * 0.5
    return load_ruleset(raw)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=300.0, help="events/s of record time (demo: 300)")
    args = ap.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "demo.jsonl"
        t0 = int(time.time() * 1000) - int(args.minutes * 60_000)
        n = write_demo_recording(path, args.minutes, args.rate, t0)
        size_mb = path.stat().st_size / 1e6
        # The worker's core alone over the same records (one ruleset, no comparison): the baseline.
        alone = run_backtest(read_recording(path), Settings(), default_ruleset(), None)
        result = run_backtest(read_recording(path), Settings(), default_ruleset(), candidate_ruleset())
    c = result.comparison
    print(f"{n} records ({size_mb:.0f} MB), {result.span_s / 60:.1f} min of record time at "
          f"{args.rate:g} events/s; {c.compared} payments decided by both rulesets, {c.changed} changed")
    cpu_speedup = result.span_s / result.cpu_s
    for label, run in (("the worker's core alone (one ruleset, same file)", alone),
                       ("backtest (both rulesets, reading the file included)", result)):
        print(f"  {label}: {run.elapsed_s:.1f} s elapsed, {run.cpu_s:.1f} s CPU; "
              f"{run.records / run.elapsed_s:.0f} records/s elapsed, {run.records / run.cpu_s:.0f} by CPU")
    print(f"  backtest / core alone: {result.elapsed_s / alone.elapsed_s:.2f} elapsed, "
          f"{result.cpu_s / alone.cpu_s:.2f} CPU")
    print(f"  speed: {result.speedup:.1f}x real time elapsed ({cpu_speedup:.1f}x by CPU time; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs); a day of demo traffic: "
          f"{86_400 / result.speedup / 60:.0f} min")
    return report([(f"backtest >= 20x real time on demo traffic: {result.speedup:.1f}x",
                    result.speedup >= 20)], started)


if __name__ == "__main__":
    raise SystemExit(main())
