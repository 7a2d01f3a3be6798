"""Memory of one worker's core over a million distinct users: RSS and table size over event time.

Part 1 sends `--users` distinct users (one payment each, and a chargeback per 100 payments, some naming
a payment never seen) through `Processor.run_local` on an in-memory table, spread over `--days` of
event time (with an empty ruleset unless `--default-rules`: memory does not depend on the rules, and
the run is shorter), and prints RSS, users in memory, the table's keys and bytes, and what the sweep removed,
as the run goes. One user in `--credit-every` pays on its credit line and repays it in full three days
later (one in a hundred of those never repays: its account is kept), and one in 20 also orders at a shop
that trades for a while and goes idle (its order index and state are swept, its summary tombstoned).
The in-memory users stop growing once the budget (`STREAMRISK_MAX_CACHED_ENTITIES`) fills; the table
stops growing once the longest retention (the payment index, 180 days, or the credit accounts' idle
time, `--credit-idle-days`) has passed and the sweep has walked the whole table once more. Ratios
compare the end of the run with that point, in the same run. Part 2 measures what one user costs in
memory while cached (the budget's unit), by tracemalloc. Part 3 runs `--rebalance-users` users on a
worker's table (Faust's store as the worker binds it), then takes half its partitions away as a
rebalance does: the keys of the lost partitions leave its memory.

Part 4 (`--merchants 100000,1000000`): every worker's view of the merchant summaries, whole in memory
against bounded (`--merchant-cache`, STREAMRISK_MERCHANT_CACHE_SIZE, the rest in RocksDB), each in a
fresh process: RSS once every summary is applied, and after `--lookups` lookups of uniformly random
merchants (the whole view keeps each one it decoded; the bounded one at most the cache), the store's
size on disk, and the cost of a lookup that misses and of one that hits (`--merchants-only` skips parts
1-3).

Run: .venv/bin/python scripts/bench_memory.py [--users 1000000] [--days 360] [--budget N] [--default-rules]
     [--credit-every 4] [--credit-idle-days N] [--rebalance-users 20000]
     [--merchants 100000,1000000] [--merchant-cache 10000] [--lookups 200000] [--merchants-only]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import orjson
from _bench import report  # scripts/_bench.py

from streamrisk.core.merchant_view import BoundedMerchantView, MerchantView, encode_summary
from streamrisk.core.processor import Processor
from streamrisk.core.records import Message
from streamrisk.features.entities import MerchantState, WindowConfig
from streamrisk.rules import load_ruleset
from streamrisk.runtime.faust.app import FaustKV
from streamrisk.runtime.summary_store import RocksSummaryStore
from streamrisk.settings import DAY_MS, Settings
from streamrisk.state import keys
from streamrisk.state.kv import DictKV, packed
from streamrisk.state.sweep import key_partition

T0 = 1_800_000_000_000
BATCH = 500
MERCHANTS = 200
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def payment(settings: Settings, user: str, eid: str, ts: int, amount: float, method: str = "card") -> Message:
    value = {"event_id": eid, "ts": ts, "user_id": user, "merchant_id": f"m{len(eid) * ts % MERCHANTS}",
             "amount": amount, "currency": "CNY", "method": method, "device_id": f"d-{user}"}
    partition = key_partition(user, settings.partitions)
    return Message("payments", partition, 0, user.encode(), orjson.dumps(value))


def repayment(settings: Settings, user: str, eid: str, ts: int, amount: float) -> Message:
    value = {"event_id": eid, "ts": ts, "account_type": "user", "account_id": user, "amount": amount,
             "currency": "CNY", "due_ts": ts + DAY_MS}
    partition = key_partition(user, settings.partitions)
    return Message("repayments", partition, 0, user.encode(), orjson.dumps(value))


def order(settings: Settings, shop: str, user: str, eid: str, ts: int, status: str) -> Message:
    value = {"event_id": f"{eid}-{status}", "ts": ts, "order_id": eid, "merchant_id": shop, "user_id": user,
             "amount": 30.0, "currency": "CNY", "status": status}
    return Message("orders", key_partition(shop, settings.partitions), 0, shop.encode(), orjson.dumps(value))


def traffic(settings: Settings, i: int, ts: int, step: int, credit_every: int) -> list[Message]:
    """User i's events at `ts` (and the repayment of a user who paid on credit three days before)."""
    user = f"user{i}"
    credit = credit_every > 0 and i % credit_every == 0
    out = [payment(settings, user, f"p{i}", ts, 10.0 + i % 50, "credit_line" if credit else "card")]
    back = i - 3 * DAY_MS // step  # a credit user of three days ago repays in full, but one in a hundred
    if credit_every > 0 and back >= 0 and back % credit_every == 0 and back % (100 * credit_every) != 0:
        out.append(repayment(settings, f"user{back}", f"r{back}", ts, 10.0 + back % 50))
    if i % 20 == 7:  # an order at a shop that trades for about 2,000 users' time
        shop = f"shop{i // 2000}"
        out += [order(settings, shop, user, f"o{i}", ts, status) for status in ("placed", "fulfilled")]
    if i % 100 == 99:  # a chargeback for a payment a few days back, or for one never sent
        j = max(0, i - 5 * DAY_MS // step)
        named = f"p{j}" if i % 200 == 99 else f"never{i}"
        out.append(chargeback(settings, f"user{j}", named, ts))
    return out


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


def table_bytes(kv: DictKV | FaustKV) -> int:
    return sum(len(k) + len(v) for k, v in kv.data.items())


def rebalance(settings: Settings, users: int, credit_every: int) -> list[tuple[str, bool]]:
    """Part 3: a worker's table (Faust's memory store, as FaustKV binds it) before and after it loses
    half its partitions."""
    store = SimpleNamespace(data={}, _key_partition={})
    kv = FaustKV(SimpleNamespace(data=store), settings.partitions)  # type: ignore[arg-type]
    kv.bind()
    proc = Processor(settings, kv, load_ruleset({"version": "empty", "rules": []}), check_partitions=True)
    batch: list[Message] = []
    step = 60_000
    for i in range(users):
        batch += traffic(settings, i, T0 + i * step, step, credit_every)
        if len(batch) >= BATCH or i == users - 1:
            proc.process(batch, T0 + i * step + 60_000)
            proc.flush_state()
            kv.take()  # the changelog records, as the worker sends them
            batch = []
    gc.collect()
    before_keys, before_mb, before_rss = len(kv.data), table_bytes(kv) / 2**20, rss_mb()
    kept = set(range(settings.partitions // 2))
    proc.forget()  # on revocation
    started = time.perf_counter()
    kv.keep_partitions(kept)  # on the new assignment
    took = time.perf_counter() - started
    gc.collect()
    after_keys, after_mb, after_rss = len(kv.data), table_bytes(kv) / 2**20, rss_mb()
    parts = settings.partitions
    foreign = sum(1 for k in kv.data if keys.id_partition(keys.entity_of(k) or "", parts) not in kept)
    print(f"  {users:,} users on {parts} partitions: table {before_keys:,} keys / {before_mb:.1f} MB, "
          f"RSS {before_rss:.0f} MB")
    print(f"  after losing partitions {sorted(set(range(parts)) - kept)}: table {after_keys:,} keys / "
          f"{after_mb:.1f} MB, RSS {after_rss:.0f} MB; {kv.dropped:,} keys dropped in {took * 1000:.0f} ms")
    return [
        (f"keys of lost partitions dropped: {foreign} left, table {after_keys / before_keys:.2f}x",
         foreign == 0 and after_keys < before_keys),
    ]


def merchant_view_child(merchants: int, cache: int, lookups: int, tmp: str) -> dict[str, float]:
    """Part 4, in a process of its own: one view's memory and lookup costs (see the docstring)."""
    settings = Settings()
    names = tuple(MerchantState(WindowConfig(settings.windows, settings.allowed_lateness_ms)).features())
    view = (BoundedMerchantView(names, cache, RocksSummaryStore(Path(tmp) / "summaries")) if cache
            else MerchantView(names))
    rng = random.Random(4)
    # Feature rows as a worker publishes them: counts, amounts with cents, rates.
    def value(name: str) -> float:
        if "count" in name or "distinct" in name:
            return rng.randrange(500)
        return round(rng.random() * 1e5, 2) if "amount" in name or name == "receivables" else rng.random()

    rows = [{n: value(n) for n in names} for _ in range(997)]
    ids = [f"merchant-{i:09d}" for i in range(merchants)]
    gc.collect()
    rss0 = rss_mb()
    started = time.perf_counter()
    for i, m in enumerate(ids):
        # Right-sized, as the bytes a worker reads from Kafka are (orjson's own output holds ~4 KiB).
        view.put(m, packed(encode_summary(view.schema, T0 + i, rows[i % 997])))
    load_s = time.perf_counter() - started
    gc.collect()
    rss1 = rss_mb()
    cold = [ids[rng.randrange(merchants)] for _ in range(lookups)]
    started = time.perf_counter()
    for m in cold:
        view.get(m)
    cold_us = (time.perf_counter() - started) / lookups * 1e6
    hot = [ids[rng.randrange(min(merchants, max(cache // 2, 1000)))] for _ in range(lookups)]
    for m in hot:  # warm the cache with the hot set
        view.get(m)
    started = time.perf_counter()
    for m in hot:
        view.get(m)
    hot_us = (time.perf_counter() - started) / lookups * 1e6
    gc.collect()
    rss2 = rss_mb()
    disk = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file()) / 2**20
    return {"merchants": merchants, "cache": cache, "rss_applied_mb": rss1 - rss0,
            "rss_looked_up_mb": rss2 - rss0, "disk_mb": disk, "load_s": load_s, "cold_us": cold_us,
            "hot_us": hot_us,            "misses": getattr(view, "misses", 0)}


def merchant_views(sizes: list[int], cache: int, lookups: int) -> list[tuple[str, bool]]:
    """Part 4: each (size, whole or bounded) in a fresh process, for an RSS of its own."""
    print(f"\nPart 4: merchant summaries, whole view against bounded to {cache:,} merchants (RocksDB), "
          f"{lookups:,} lookups of random merchants")
    print(f"  {'merchants':>10} {'view':>9} {'RSS applied':>12} {'RSS looked up':>14} {'B/merchant':>10} "
          f"{'disk MB':>8} {'load s':>7} {'cold µs':>8} {'hot µs':>7}")
    got: dict[tuple[int, int], dict[str, float]] = {}
    for n in sizes:
        for c in (0, cache):
            tmp = tempfile.mkdtemp(prefix="streamrisk-bench-")
            try:
                done = subprocess.run(
                    [sys.executable, __file__, "--merchant-view-child", f"{n},{c},{lookups},{tmp}"],
                    capture_output=True, text=True, check=True)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            r = got[(n, c)] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"  {n:>10,} {'whole' if c == 0 else f'{c:,}':>9} {r['rss_applied_mb']:>9.0f} MB "
                  f"{r['rss_looked_up_mb']:>11.0f} MB {r['rss_applied_mb'] * 2**20 / n:>10.0f} "
                  f"{r['disk_mb']:>8.0f} {r['load_s']:>7.1f} {r['cold_us']:>8.1f} {r['hot_us']:>7.2f}",
                  flush=True)
    largest = max(sizes)
    whole, bounded = got[(largest, 0)], got[(largest, cache)]
    return [(f"bounded view at {largest:,} merchants: RSS {bounded['rss_looked_up_mb']:.0f} MB against "
             f"{whole['rss_looked_up_mb']:.0f} MB whole",
             bounded["rss_looked_up_mb"] < whole["rss_looked_up_mb"])]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=360)
    ap.add_argument("--budget", type=int, default=None, help="max cached entities (default: the setting's)")
    ap.add_argument("--reports", type=int, default=20)
    ap.add_argument("--default-rules", action="store_true", help="decide with the default ruleset")
    ap.add_argument("--probe-users", type=int, default=500, help="users per cost-per-user measure")
    ap.add_argument("--credit-every", type=int, default=4, help="one user in N pays on credit (0: none)")
    ap.add_argument("--credit-idle-days", type=int, default=None,
                    help="idle days before a settled credit account closes (default: the setting's)")
    ap.add_argument("--rebalance-users", type=int, default=20_000, help="users of part 3 (0: skip it)")
    ap.add_argument("--merchants", default="", help="part 4: merchant counts (e.g. 100000,1000000)")
    ap.add_argument("--merchant-cache", type=int, default=10_000, help="part 4: the bounded view's cache")
    ap.add_argument("--lookups", type=int, default=200_000, help="part 4: random lookups per view")
    ap.add_argument("--merchants-only", action="store_true", help="run part 4 alone")
    ap.add_argument("--merchant-view-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.merchant_view_child:
        n, c, lookups, tmp = args.merchant_view_child.split(",", 3)
        print(json.dumps(merchant_view_child(int(n), int(c), int(lookups), tmp)))
        return 0
    started = time.perf_counter()
    sizes = [int(x) for x in args.merchants.split(",") if x.strip()]
    if args.merchants_only:
        return report(merchant_views(sizes, args.merchant_cache, args.lookups) if sizes else [], started)
    settings = Settings()
    if args.budget:
        settings = settings.replace(max_cached_entities=args.budget)
    if args.credit_idle_days:
        settings = settings.replace(credit_account_idle_ms=args.credit_idle_days * DAY_MS)
    budget = settings.max_cached_entities

    print(f"Part 1: {args.users:,} distinct users over {args.days} days of event time, budget {budget:,} "
          f"entities per kind, {settings.partitions} partitions, batches of {BATCH}")
    kv = DictKV(log=False)
    empty = None if args.default_rules else load_ruleset({"version": "empty", "rules": []})
    proc = Processor(settings, kv, empty)
    step = args.days * DAY_MS // args.users
    every = max(1, args.users // args.reports)
    index_days = settings.payment_index_ms // DAY_MS
    if args.credit_every:
        assert proc.credit is not None
        index_days = max(index_days, proc.credit.idle_ms // DAY_MS)  # the longest retention
    print(f"  {'users':>9} {'day':>5} {'RSS MB':>8} {'in mem':>8} {'table keys':>11} {'table MB':>9} "
          f"{'accounts':>8} {'swept u/x/k/a/cu/ox/tomb':>34} {'s':>6}")
    rows: list[tuple[int, float, float, int, float]] = []
    walks_at: list[float] = []  # event day at which each walk of the sweep over the table ended
    walk_ends: list[tuple[float, int, float]] = []  # (day, table keys, table MB) as each walk ended
    batch: list[Message] = []
    for i in range(args.users):
        ts = T0 + i * step
        batch += traffic(settings, i, ts, step, args.credit_every)
        if len(batch) >= BATCH or i == args.users - 1:
            proc.run_local(batch, ts + 60_000)
            batch = []
            if proc.sweeper.walks > len(walks_at):
                walks_at.append((ts - T0) / DAY_MS)
                walk_ends.append((walks_at[-1], len(kv.data), table_bytes(kv) / 2**20))
        if (i + 1) % every == 0:
            day = (ts - T0) / DAY_MS
            m = proc.stats()["memory"]
            tb = table_bytes(kv) / 2**20
            rows.append((i + 1, day, rss_mb(), len(kv.data), tb))
            swept = (f"{m['idle_entities_swept']}/{m['idle_payment_indexes_swept']}/"
                     f"{m['early_chargebacks_swept']}/{m['alert_dedupe_entries_swept']}/"
                     f"{m.get('user_credit_accounts_swept', 0)}/{m.get('order_indexes_swept', 0)}/"
                     f"{m['merchant_summaries_tombstoned']}")
            accounts = sum(1 for k in kv.data if k[:3] == b"cu\x1f")
            print(f"  {i + 1:>9,} {day:>5.0f} {rows[-1][2]:>8.0f} {m['users_in_memory']:>8,} "
                  f"{len(kv.data):>11,} {tb:>9.1f} {accounts:>8,} {swept:>34} "
                  f"{time.perf_counter() - started:>6.0f}", flush=True)

    # Baseline: the first report after the longest retention (index days, plus the grace) passed and
    # the sweep then walked the whole table once (what expired is gone within one walk). The table is
    # compared as walks end (a report between two walks also counts what expired since the last one).
    walked = [d for d in walks_at if d >= index_days + 1][1:2]
    settled = [r for r in rows if walked and r[1] >= walked[0]]
    ends = [w for w in walk_ends if walked and w[0] >= walked[0]]
    print(f"\n  walks of the sweep over the table ended at days {', '.join(f'{d:.0f}' for d in walks_at)}")
    checks: list[tuple[str, bool]] = []
    if len(settled) >= 2 and len(ends) >= 2:
        base, end = settled[0], rows[-1]
        rss_ratio = end[2] / base[2]
        keys_ratio, bytes_ratio = ends[-1][1] / ends[0][1], ends[-1][2] / ends[0][2]
        print(f"  end vs day {base[1]:.0f} (retention passed, table walked), "
              f"{end[0] - base[0]:,} more users: RSS {rss_ratio:.2f}x; table at the walks' ends, day "
              f"{ends[-1][0]:.0f} vs {ends[0][0]:.0f}: keys {ends[-1][1]:,} / {ends[0][1]:,} = "
              f"{keys_ratio:.2f}x, bytes {bytes_ratio:.2f}x")
        checks += [
            (f"RSS flat once the budget filled and retention passed: {rss_ratio:.2f}x", rss_ratio <= 1.10),
            (f"table keys flat once retention passed: {keys_ratio:.2f}x", keys_ratio <= 1.10),
        ]
    else:
        print(f"  too short to pass the longest retention ({index_days} days) and a walk: no flatness check")
    checks.append((f"users in memory within the budget: {len(proc.users.slots):,} <= {budget:,}",
                   len(proc.users.slots) <= budget))
    book = proc.credit
    if args.credit_every and book is not None and args.days * DAY_MS > book.idle_ms + 60 * DAY_MS:
        swept = book.user_accounts_swept
        checks.append((f"settled idle credit accounts swept: {swept:,}", swept > 0))
    del proc, kv, batch, book
    gc.collect()

    n = args.probe_users
    print(f"\nPart 2: memory per user while cached (tracemalloc, {n} users rebuilt from the table)")
    for k in (1, 10, 30):
        print(f"  user with {k:>2} payment(s) held: {cost_per_cached_user(settings, k, n) / 1024:6.1f} KiB")
    if args.rebalance_users:
        print(f"\nPart 3: a rebalance takes half the worker's partitions ({args.rebalance_users:,} users)")
        checks += rebalance(settings, args.rebalance_users, args.credit_every)
    if sizes:
        checks += merchant_views(sizes, args.merchant_cache, args.lookups)
    return report(checks, started)


if __name__ == "__main__":
    raise SystemExit(main())
