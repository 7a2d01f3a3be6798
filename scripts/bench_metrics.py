"""What /metrics adds to the worker's per-event path: its observer of each batch (`observe_batch`, which
the batch runner calls after processing a batch).

The counters are read at scrape time, so the only per-event work is the observer's loop (the last
offset per partition for the lag, one histogram observation per payment for the latency). This times
the observer alone, and the real processor on the same records, in the same run, and prints their
ratio.

Run: .venv/bin/python scripts/bench_metrics.py [--events 5000]
"""

from __future__ import annotations

import argparse
import time

from bench_processor import BATCH, make_messages  # scripts/bench_processor.py

from streamrisk.core.processor import Processor
from streamrisk.core.records import Message
from streamrisk.settings import Settings
from streamrisk.state.kv import DictKV
from streamrisk.web.metrics import WorkerMetrics


def per_event(process, batches: list[list[Message]], now: int, repeat: int) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    n = sum(len(b) for b in batches)
    for _ in range(repeat):
        started = time.perf_counter()
        for b in batches:
            process(b, now)
        best = min(best, (time.perf_counter() - started) / n)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=5000)
    args = ap.parse_args()
    stamp = int(time.time() * 1000)
    msgs, now = make_messages(args.events)
    msgs = [m._replace(timestamp_ms=stamp) for m in msgs]
    batches = [msgs[i:i + BATCH] for i in range(0, len(msgs), BATCH)]

    observe = WorkerMetrics(Processor(Settings(), DictKV())).observe_batch
    observer = per_event(lambda batch, now_ms: observe(batch, 0.001), batches, now, repeat=20)

    def real(batch: list[Message], now_ms: int) -> None:
        proc.process(batch, now_ms)
        proc.flush_state()

    proc = Processor(Settings(), DictKV())
    core = per_event(real, batches, now, repeat=1)
    print(f"{args.events} synthetic events, batches of {BATCH}")
    print(f"  processor (baseline)         {core * 1e6:8.2f} us/event")
    share = observer / core
    print(f"  metrics batch observer       {observer * 1e6:8.2f} us/event  ({share:.1%} of the baseline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
