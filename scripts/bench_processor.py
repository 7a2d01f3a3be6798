"""The worker's core per event, without Kafka: `Processor.process` + `flush_state` on an in-memory table.

Synthetic marketplace traffic (the demo's mix, credit stories included) goes through the real processor
in batches of 500, in three configurations side by side: each batch goes to all three in turn (in a
rotating order), and each is charged the CPU time of its own calls. The whole run is repeated, and each
configuration's cost is the sum over batches of its best time for that batch, so a busy machine's
bursts, which hit one batch of one configuration in one repeat, do not decide the ratios. The
configurations:

- baseline: empty ruleset (no rules, no score), credit off;
- no credit: the default ruleset and score without its credit rule, credit off;
- credit: the default ruleset and score, with credit accounts, lines and adjustments;
- explained: the same, with an explanation on every decision;
- merchant cache misses: the default ruleset with credit, its merchant view bounded to one merchant
  (`STREAMRISK_MERCHANT_CACHE_SIZE=1`) over RocksDB, so a payment's merchant is almost always a miss (300
  merchants): what a miss costs a payment;
- with `--rules FILE` (e.g. a ruleset written by `streamrisk train`): that ruleset with credit, against
  "default ruleset + credit" (the learned score must cost at most 10 % more per payment).

Run: .venv/bin/python scripts/bench_processor.py [--events 60000] [--repeat 3] [--rules FILE]
(best of --repeat)
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import orjson
from _bench import report  # scripts/_bench.py

from streamrisk.core.processor import Processor
from streamrisk.core.records import Message
from streamrisk.loadgen.synthetic import CREDIT_STORIES, Mix, Traffic
from streamrisk.rules import Ruleset, default_ruleset, load_ruleset
from streamrisk.runtime.summary_store import RocksSummaryStore
from streamrisk.settings import Settings
from streamrisk.state.kv import DictKV

BATCH = 500
CREDIT_MAX_RATIO = 1.15
RULES_MAX_RATIO = 1.10


def make_messages(n: int) -> tuple[list[Message], int]:
    """n events at 50/s of event time, ending now; and the "now" (ms) to process them at."""
    t0 = int(time.time() * 1000) - n * 20
    traffic = Traffic(5000, 300, seed=3, mix=Mix(credit_stories=CREDIT_STORIES), run_id="bench")
    out = []
    for i in range(n):
        rec = traffic.next(t0 + i * 20)
        out.append(Message(rec.topic, i % 4, i, rec.key.encode(), orjson.dumps(rec.value)))
    return out, t0 + n * 20 + 1000


def without_credit_rules(rs: Ruleset) -> Ruleset:
    raw = rs.to_mapping()
    raw["rules"] = [r for r in raw["rules"] if "credit_" not in r["when"]]
    return load_ruleset(raw)


def run(msgs: list[Message], configs: dict[str, tuple[Settings, Ruleset]], now: int
        ) -> tuple[dict[str, list[float]], dict[str, Processor]]:
    """CPU seconds per batch per configuration, each batch given to every configuration in turn."""
    tmp = Path(tempfile.mkdtemp(prefix="streamrisk-bench-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    procs = {
        label: Processor(s, DictKV(), r, summary_store=RocksSummaryStore(tmp / f"view{i}")
                         if s.merchant_cache_size else None)
        for i, (label, (s, r)) in enumerate(configs.items())
    }
    spent: dict[str, list[float]] = {label: [] for label in configs}
    clock = time.process_time
    labels = list(procs)
    for n, i in enumerate(range(0, len(msgs), BATCH)):
        batch = msgs[i:i + BATCH]
        k = n % len(labels)
        for label in labels[k:] + labels[:k]:
            started = clock()
            # Forwarded merchant events and summaries come back, as they would through Kafka.
            procs[label].run_local(batch, now)
            spent[label].append(clock() - started)
    return spent, procs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rules", help="also measure this ruleset (with credit) against the default one")
    args = ap.parse_args()
    started = time.perf_counter()
    msgs, now = make_messages(args.events)
    off = Settings(credit_enabled=False)
    configs = {
        "baseline: empty ruleset": (off, load_ruleset({"version": "empty", "rules": []})),
        "default ruleset, no credit": (off, without_credit_rules(default_ruleset())),
        "default ruleset + credit": (Settings(), default_ruleset()),
        "same + explanation": (Settings(explain_decisions=True), default_ruleset()),
        "credit, merchant cache misses": (Settings(merchant_cache_size=1), default_ruleset()),
    }
    if args.rules:
        configs["--rules FILE + credit"] = (Settings(), load_ruleset(args.rules))
    per_batch: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        spent, procs = run(msgs, configs, now)
        for label, secs in spent.items():
            prev = per_batch.get(label, secs)
            per_batch[label] = [min(a, b) for a, b in zip(prev, secs, strict=True)]
    best = {label: sum(secs) for label, secs in per_batch.items()}
    plain, credit = per_batch["default ruleset, no credit"], per_batch["default ruleset + credit"]
    ratios = [c / p for c, p in zip(credit, plain, strict=True) if p > 0]
    proc = procs["default ruleset + credit"]
    payments = proc.counters.consumed.get("payments", 0)
    print(f"{args.events} events ({payments} payments), batches of {BATCH}, in-memory table, one core, "
          f"CPU time, best of {args.repeat} per batch")
    for label, secs in best.items():
        print(f"  {label:<28}{args.events / secs:9.0f} events/s  {secs / args.events * 1e6:6.1f} µs/event")
    base_s, plain_s, full_s, explain_s, miss_s = list(best.values())[:5]
    per_payment = (plain_s - base_s) / max(payments, 1) * 1e6
    print(f"  deciding adds {per_payment:.1f} µs per payment; ratio default/baseline {plain_s / base_s:.2f}")
    credit_ratio = full_s / plain_s
    q = statistics.quantiles(ratios, n=4)
    print(f"  credit adds {(full_s - plain_s) / args.events * 1e6:.1f} µs per event; ratio credit/no credit "
          f"{credit_ratio:.3f} (per batch: median {statistics.median(ratios):.3f}, "
          f"quartiles {q[0]:.3f}-{q[2]:.3f} over {len(ratios)} batches)")
    print(f"  explanation on every decision: ratio {explain_s / full_s:.3f} to the same without "
          f"(+{(explain_s - full_s) / max(payments, 1) * 1e6:.1f} µs per payment)")
    view = procs["credit, merchant cache misses"].merchant_view
    misses = getattr(view, "misses", 0)
    print(f"  merchant view bounded to 1 merchant (RocksDB): {misses} misses in {payments} payments, "
          f"ratio {miss_s / full_s:.3f} to the whole view in memory "
          f"(+{(miss_s - full_s) / max(misses, 1) * 1e6:.1f} µs per miss)")
    print(f"  decisions {proc.counters.decisions}, alerts {proc.counters.alerts}")
    print(f"  limit adjustments {proc.credit.limit_adjustments}")
    print(f"  line adjustments {proc.credit.line_adjustments}")
    rules_check = []
    if args.rules:
        rules_s = best["--rules FILE + credit"]
        score = load_ruleset(args.rules).score_model
        extra = (rules_s - full_s) / max(payments, 1) * 1e6
        print(f"  --rules {args.rules} ({len(score.features)} score features): ratio {rules_s / full_s:.3f} "
              f"to the default ruleset + credit ({extra:+.1f} µs per payment)")
        rules_check = [(f"--rules costs <= {RULES_MAX_RATIO - 1:.0%} more than the default ruleset: "
                        f"x{rules_s / full_s:.3f}", rules_s / full_s <= RULES_MAX_RATIO)]
    checks = [
        *rules_check,
        (f"the core alone sustains >= 6500 events/s (Faust's do-nothing agent rate): "
         f"{args.events / full_s:.0f}", args.events / full_s >= 6500),
        (f"credit adds <= {CREDIT_MAX_RATIO - 1:.0%} to the core's cost per event: x{credit_ratio:.3f}",
         credit_ratio <= CREDIT_MAX_RATIO),
    ]
    return report(checks, started)


if __name__ == "__main__":
    raise SystemExit(main())
