"""What the hostile-input checks cost per record, as ratios to the worker's core measured in the same run.

All times are CPU time of this process. The core (`Processor.process` + `flush_state`, default ruleset,
synthetic traffic in batches of 500) runs with and without the murmur2 partition check, on the
partitions a Kafka producer would have used. The hash itself is timed alone, uncached and through the
memo, and so is the payment validation.

Run: .venv/bin/python scripts/bench_input_checks.py [--events 30000]
"""

from __future__ import annotations

import argparse
import time
import timeit

import orjson
from _bench import report  # scripts/_bench.py

from streamrisk.core.events import Validator
from streamrisk.core.partitioning import KeyPlacement, kafka_partition
from streamrisk.core.processor import Processor
from streamrisk.core.records import Message
from streamrisk.loadgen.synthetic import Mix, Traffic
from streamrisk.settings import Settings
from streamrisk.state.kv import DictKV

BATCH = 500


def messages(n: int, t0: int, partitions: int) -> list[Message]:
    traffic = Traffic(5000, 300, seed=3, mix=Mix(), run_id="bench")
    out = []
    for i in range(n):
        rec = traffic.next(t0 + i * 20)
        key = rec.key.encode()
        out.append(Message(rec.topic, kafka_partition(key, partitions), i, key, orjson.dumps(rec.value)))
    return out


def core_us(msgs: list[Message], now: int, check: bool) -> float:
    proc = Processor(Settings(), DictKV(), check_partitions=check)
    started = time.process_time()
    for i in range(0, len(msgs), BATCH):
        proc.run_local(msgs[i:i + BATCH], now)
    assert proc.counters.mispartitioned == 0 and proc.counters.dead_letters == 0
    return (time.process_time() - started) / len(msgs) * 1e6


def per_call_us(fn: object, number: int) -> float:
    times = timeit.repeat(fn, number=number, repeat=5, timer=time.process_time)  # type: ignore[arg-type]
    return min(times) / number * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=30_000)
    args = ap.parse_args()
    started = time.perf_counter()
    settings = Settings()
    t0 = int(time.time() * 1000) - args.events * 20
    msgs = messages(args.events, t0, settings.partitions)
    now = t0 + args.events * 20 + 1000
    # CPU time, alternating runs, each one's best: the machine is shared and its wall clock noisy.
    runs = [(core_us(msgs, now, False), core_us(msgs, now, True)) for _ in range(2)]
    off, on = min(r[0] for r in runs), min(r[1] for r in runs)

    keys = [m.key for m in msgs[:5000] if m.key]
    placement = KeyPlacement(settings.partitions)
    k = keys[0]
    raw_us = per_call_us(lambda: kafka_partition(k, 4), 20_000)
    long_key = ("u" * 255).encode()
    long_us = per_call_us(lambda: kafka_partition(long_key, 4), 2_000)
    placement.expected(k)
    memo_us = per_call_us(lambda: placement.problem(k, placement.expected(k)), 20_000)
    v = Validator(settings.currencies, settings.max_future_skew_ms)
    pay = next(m for m in msgs if m.topic == "payments")
    valid_us = per_call_us(lambda: v.payment(pay.key, pay.value, now), 20_000)

    print(f"{args.events} synthetic events, batches of {BATCH}, default ruleset, one core")
    print(f"  core without partition check   {off:6.1f} µs/event (baseline)")
    print(f"  core with partition check      {on:6.1f} µs/event  ratio {on / off:.3f}")
    print(f"  murmur2, {len(k)}-byte key, uncached {raw_us:6.2f} µs  ({raw_us / off:.1%} of an event)")
    print(f"  murmur2, 255-byte key, uncached {long_us:6.2f} µs")
    print(f"  partition check, memo hit      {memo_us:6.2f} µs  ({memo_us / off:.1%})")
    print(f"  payment validation             {valid_us:6.2f} µs  ({valid_us / off:.1%})")
    checks = [(f"partition check costs < 10% of the core per event: ratio {on / off:.3f}", on / off < 1.10)]
    return report(checks, started)


if __name__ == "__main__":
    raise SystemExit(main())
