"""Memory of one worker's core over a million distinct users: RSS and table size over event time.

Part 1 sends `--users` distinct users (one payment each, and a chargeback per 100 payments, some naming
a payment never seen) through `Processor.run_local` on an in-memory table, spread over `--days` of
event time (with an empty ruleset unless `--default-rules`: memory does not depend on the rules, and
the run is shorter), and prints RSS, users in memory, the table's keys and bytes, and what the sweep removed,
as the run goes. The in-memory users stop growing once the budget (`STREAMRISK_MAX_CACHED_ENTITIES`)
fills; the table stops growing once the longest retention (the payment index, 180 days) has passed
and the sweep has walked the whole table once more. Ratios compare the end of the run with that point,
in the same run. Part 2 measures what one user costs in memory while cached (the budget's unit), by
tracemalloc.

Run: .venv/bin/python scripts/bench_memory.py [--users 1000000] [--days 360] [--budget N] [--default-rules]
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc

import orjson
from _bench import report  # scripts/_bench.py

from streamrisk.processor import Processor
from streamrisk.records import Message
from streamrisk.rules import load_ruleset
from streamrisk.settings import DAY_MS, Settings
from streamrisk.state.kv import DictKV
from streamrisk.state.sweep import key_partition

T0 = 1_800_000_000_000
BATCH = 500
MERCHANTS = 200
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def payment(settings: Settings, user: str, eid: str, ts: int, amount: float) -> Message:
    value = {"event_id": eid, "ts": ts, "user_id": user, "merchant_id": f"m{len(eid) * ts % MERCHANTS}",
             "amount": amount, "currency": "CNY", "method": "card", "device_id": f"d-{user}"}
    partition = key_partition(user, settings.partitions)
    return Message("payments", partition, 0, user.encode(), orjson.dumps(value))


def chargeback(settings: Settings, user: str, payment_id: str, ts: int) -> Message:
    value = {"event_id": f"cb-{payment_id}", "ts": ts, "payment_id": payment_id, "user_id": user,
             "merchant_id": f"m{ts % MERCHANTS}", "amount": 1.0, "currency": "CNY", "reason": "fraud"}
    return Message("chargebacks", key_partition(user, settings.partitions), 0, user.encode(),
                   orjson.dumps(value))


def cost_per_cached_user(settings: Settings, payments_each: int, n: int = 500) -> float:
    """Bytes of Python memory one user takes while in memory (rebuilt from the table), by tracemalloc."""
    proc = Processor(settings.replace(max_cached_entities=10 * n), DictKV(log=False))
    msgs = [payment(settings, f"c{i}", f"c{i}-{k}", T0 + k * 3_600_000 + i, 20.0 + k)
            for k in range(payments_each) for i in range(n)]
    for i in range(0, len(msgs), BATCH):
        proc.run_local(msgs[i:i + BATCH], T0 + DAY_MS * 60)
    proc.users.slots.clear()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        proc.users.slot(f"c{i}", key_partition(f"c{i}", settings.partitions))
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / n


def table_bytes(kv: DictKV) -> int:
    return sum(len(k) + len(v) for k, v in kv.data.items())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=360)
    ap.add_argument("--budget", type=int, default=None, help="max cached entities (default: the setting's)")
    ap.add_argument("--reports", type=int, default=20)
    ap.add_argument("--default-rules", action="store_true", help="decide with the default ruleset")
    ap.add_argument("--probe-users", type=int, default=500, help="users per cost-per-user measure")
    args = ap.parse_args()
    started = time.perf_counter()
    settings = Settings()
    if args.budget:
        settings = settings.replace(max_cached_entities=args.budget)
    budget = settings.max_cached_entities

    print(f"Part 1: {args.users:,} distinct users over {args.days} days of event time, budget {budget:,} "
          f"entities per kind, {settings.partitions} partitions, batches of {BATCH}")
    kv = DictKV(log=False)
    empty = None if args.default_rules else load_ruleset({"version": "empty", "rules": []})
    proc = Processor(settings, kv, empty)
    step = args.days * DAY_MS // args.users
    every = max(1, args.users // args.reports)
    index_days = settings.payment_index_ms // DAY_MS
    print(f"  {'users':>9} {'day':>5} {'RSS MB':>8} {'in mem':>8} {'table keys':>11} {'table MB':>9} "
          f"{'swept u/x/k/a':>24} {'s':>6}")
    rows: list[tuple[int, float, float, int, float]] = []
    walks_at: list[float] = []  # event day at which each walk of the sweep over the table ended
    batch: list[Message] = []
    for i in range(args.users):
        ts = T0 + i * step
        user = f"user{i}"
        batch.append(payment(settings, user, f"p{i}", ts, 10.0 + i % 50))
        if i % 100 == 99:  # a chargeback for a payment a few days back, or for one never sent
            j = max(0, i - 5 * DAY_MS // step)
            named = f"p{j}" if i % 200 == 99 else f"never{i}"
            batch.append(chargeback(settings, f"user{j}", named, ts))
        if len(batch) >= BATCH or i == args.users - 1:
            proc.run_local(batch, ts + 60_000)
            batch = []
            if proc.sweeper.walks > len(walks_at):
                walks_at.append((ts - T0) / DAY_MS)
        if (i + 1) % every == 0:
            day = (ts - T0) / DAY_MS
            m = proc.stats()["memory"]
            tb = table_bytes(kv) / 2**20
            rows.append((i + 1, day, rss_mb(), len(kv.data), tb))
            swept = (f"{m['idle_entities_swept']}/{m['idle_payment_indexes_swept']}/"
                     f"{m['early_chargebacks_swept']}/{m['alert_dedupe_entries_swept']}")
            print(f"  {i + 1:>9,} {day:>5.0f} {rows[-1][2]:>8.0f} {m['users_in_memory']:>8,} "
                  f"{len(kv.data):>11,} {tb:>9.1f} {swept:>24} {time.perf_counter() - started:>6.0f}",
                  flush=True)

    # Baseline: the first report after the longest retention (index days, plus the grace) passed and
    # the sweep then walked the whole table once (what expired is gone within one walk).
    walked = [d for d in walks_at if d >= index_days + 1][1:2]
    settled = [r for r in rows if walked and r[1] >= walked[0]]
    print(f"\n  walks of the sweep over the table ended at days {', '.join(f'{d:.0f}' for d in walks_at)}")
    checks: list[tuple[str, bool]] = []
    if len(settled) >= 2:
        base, end = settled[0], rows[-1]
        rss_ratio, keys_ratio, bytes_ratio = end[2] / base[2], end[3] / base[3], end[4] / base[4]
        print(f"  end vs day {base[1]:.0f} (retention passed, table walked), "
              f"{end[0] - base[0]:,} more users: RSS {rss_ratio:.2f}x, "
              f"table keys {keys_ratio:.2f}x, table bytes {bytes_ratio:.2f}x")
        checks += [
            (f"RSS flat once the budget filled and retention passed: {rss_ratio:.2f}x", rss_ratio <= 1.10),
            (f"table keys flat once retention passed: {keys_ratio:.2f}x", keys_ratio <= 1.10),
        ]
    else:
        print(f"  too short to pass the retention ({index_days} days) and a walk: no flatness check")
    checks.append((f"users in memory within the budget: {len(proc.users.slots):,} <= {budget:,}",
                   len(proc.users.slots) <= budget))
    del proc, kv, batch
    gc.collect()

    n = args.probe_users
    print(f"\nPart 2: memory per user while cached (tracemalloc, {n} users rebuilt from the table)")
    for k in (1, 10, 30):
        print(f"  user with {k:>2} payment(s) held: {cost_per_cached_user(settings, k, n) / 1024:6.1f} KiB")
    return report(checks, started)


if __name__ == "__main__":
    raise SystemExit(main())
