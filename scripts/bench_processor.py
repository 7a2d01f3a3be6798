"""The worker's core per event, without Kafka: `Processor.process` + `flush_state` on an in-memory table.

Synthetic marketplace traffic (the demo's mix) goes through the real processor in batches of 500, with
the default ruleset, and again with an empty ruleset (no rules, no score: the baseline) in the same run,
so the ratio shows what deciding costs on top of validation, windows, state and the merchant side.

Run: .venv/bin/python scripts/bench_processor.py [--events 60000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import orjson
from _bench import report  # scripts/_bench.py

from streamrisk.loadgen.synthetic import Mix, Traffic
from streamrisk.processor import Message, Processor
from streamrisk.rules import load_ruleset
from streamrisk.settings import Settings
from streamrisk.state.store import DictKV

BATCH = 500


def make_messages(n: int, t0: int) -> list[Message]:
    traffic = Traffic(5000, 300, seed=3, mix=Mix(), run_id="bench")
    out = []
    for i in range(n):
        rec = traffic.next(t0 + i * 20)  # 50 events/s of event time
        out.append(Message(rec.topic, i % 4, i, rec.key.encode(), orjson.dumps(rec.value)))
    return out


def run(msgs: list[Message], ruleset_empty: bool, now: int, explain: bool = False) -> tuple[float, Processor]:
    settings = Settings(explain_decisions=explain)
    ruleset = load_ruleset({"version": "empty", "rules": []}) if ruleset_empty else None
    proc = Processor(settings, DictKV(), ruleset)
    started = time.perf_counter()
    for i in range(0, len(msgs), BATCH):
        # Forwarded merchant events and summaries come back, as they would through Kafka.
        proc.run_local(msgs[i:i + BATCH], now)
    return time.perf_counter() - started, proc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs with and without explanations (default 3)")
    args = ap.parse_args()
    started = time.perf_counter()
    t0 = int(time.time() * 1000) - args.events * 20
    msgs = make_messages(args.events, t0)
    now = t0 + args.events * 20 + 1000
    base_s, _ = run(msgs, True, now)
    # With and without explanations, alternated and the fastest of each kept: on a busy machine a
    # single pair of runs can differ by more than what is measured.
    full_s = explain_s = float("inf")
    for _ in range(args.repeat):
        secs, proc = run(msgs, False, now)
        full_s = min(full_s, secs)
        explain_s = min(explain_s, run(msgs, False, now, explain=True)[0])
    payments = proc.counters.consumed.get("payments", 0)
    print(f"{args.events} events ({payments} payments), batches of {BATCH}, in-memory table, one core")
    for label, secs in (("baseline: empty ruleset", base_s), ("default ruleset + score", full_s),
                        ("same + explanation", explain_s)):
        print(f"  {label:<28}{args.events / secs:9.0f} events/s  {secs / args.events * 1e6:6.1f} µs/event")
    per_payment = (full_s - base_s) / max(payments, 1) * 1e6
    print(f"  deciding adds {per_payment:.1f} µs per payment; ratio default/baseline {full_s / base_s:.2f}")
    print(f"  explanation on every decision: ratio {explain_s / full_s:.3f} to the same without "
          f"(+{(explain_s - full_s) / max(payments, 1) * 1e6:.1f} µs per payment)")
    print(f"  decisions {proc.counters.decisions}, alerts {proc.counters.alerts}")
    checks = [(f"the core alone sustains >= 6500 events/s (Faust's do-nothing agent rate): "
               f"{args.events / full_s:.0f}", args.events / full_s >= 6500)]
    return report(checks, started)


if __name__ == "__main__":
    raise SystemExit(main())
