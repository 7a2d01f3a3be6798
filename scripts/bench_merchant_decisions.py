"""What keeping each merchant's last decisions costs per payment (state/merchant_decisions.py).

The traffic of bench_processor.py (default ruleset, credit on) goes through two processors on in-memory
tables side by side, batch by batch in alternating order, each charged the CPU time of its own calls: one
keeping the last 10 decisions per merchant (the decision rides on the forwarded merchant event), one
keeping none (`merchant_recent_decisions=0`: the forwarded event carries no decision). Best of --repeat
per batch.
With 300 merchants and batches of 500, nearly every merchant's record is rewritten every batch: the
worst case for the once-per-batch write.

Run: .venv/bin/python scripts/bench_merchant_decisions.py [--events 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time

from _bench import report  # scripts/_bench.py
from bench_processor import BATCH, make_messages

from streamrisk.core.processor import Processor
from streamrisk.rules import default_ruleset
from streamrisk.settings import Settings
from streamrisk.state.kv import DictKV

MAX_US_PER_PAYMENT = 5.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    started = time.perf_counter()
    msgs, now = make_messages(args.events)
    labels = {"none kept": 0, "10 kept": 10}
    best: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        procs = {
            label: Processor(Settings(merchant_recent_decisions=keep), DictKV(log=False), default_ruleset())
            for label, keep in labels.items()
        }
        spent: dict[str, list[float]] = {label: [] for label in labels}
        order = list(labels)
        for i in range(0, len(msgs), BATCH):
            order.reverse()
            for label in order:
                t = time.process_time()
                procs[label].run_local(msgs[i:i + BATCH], now)
                spent[label].append(time.process_time() - t)
        for label, secs in spent.items():
            best[label] = [min(a, b) for a, b in zip(best.get(label, secs), secs, strict=True)]
    kept = procs["10 kept"]
    payments = kept.counters.consumed.get("payments", 0)
    merchants = len(kept.merchants.slots)
    none_s, kept_s = sum(best["none kept"]), sum(best["10 kept"])
    added = (kept_s - none_s) / max(payments, 1) * 1e6
    print(f"{args.events} events ({payments} payments, {merchants} merchants), batches of {BATCH}, "
          f"CPU time, best of {args.repeat} per batch")
    for label in labels:
        print(f"  {label:<10}{sum(best[label]) / args.events * 1e6:7.1f} µs/event")
    print(f"  keeping 10 decisions per merchant adds {added:.2f} µs per payment; ratio {kept_s / none_s:.3f}")
    check = (f"adds <= {MAX_US_PER_PAYMENT} µs per payment: {added:.2f}", added <= MAX_US_PER_PAYMENT)
    return report([check], started)


if __name__ == "__main__":
    raise SystemExit(main())
