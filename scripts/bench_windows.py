"""Benchmark of the window engine and of the worker's real persistence path for it.

Engine (streamrisk.windows): update cost vs brute force, memory per held event.
Persistence, as the worker does it (EntityStore + UserState over a DictKV, chunks of orjson lines):
changelog bytes per event, rebuild time of 1M held events, memory of a loaded user.

Run: .venv/bin/python scripts/bench_windows.py [--quick]. Ratios are within one run (noisy box).
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import tracemalloc
from bisect import bisect_right
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

try:
    import streamrisk  # noqa: F401
except ImportError:  # not installed: run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _bench import report  # scripts/_bench.py

from streamrisk.features.entities import U_PAYMENT, UserState, WindowConfig
from streamrisk.settings import Settings
from streamrisk.state.chunks import HeldEvent
from streamrisk.state.kv import DictKV
from streamrisk.state.store import EntityStore, Slot
from streamrisk.windows import AddPath, SlidingWindows

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
# The worker's own configuration: default feature windows, and a user's payment series spec.
_S = Settings()
CFG = WindowConfig(windows=_S.windows, allowed_lateness_ms=_S.allowed_lateness_ms)
SPEC = CFG.user_payments
HORIZONS = SPEC.horizons
LATENESS = SPEC.lateness
WIDEST = SPEC.widest
T0 = 1_732_000_000_000
RUN_ID = "5f3a9c1e"  # event ids look like the load generator's: "p" + "pay-<run>-<seq>"
MERCHANTS = [f"m{i:06d}" for i in range(1000)]
DEVICES = [f"dev-{i:02d}" for i in range(20)]


class Stream:
    """Synthetic payments of one user: ~94% in order, 5% late within 1h, 1% later."""

    def __init__(self, held: int, seed: int) -> None:
        self.gap = WIDEST // held  # steady state holds ~`held` events in the widest
        self.rng = random.Random(seed)
        self.t = T0
        self.n = 0

    def next(self) -> tuple[int, int, tuple[str, str], int]:
        rng = self.rng
        self.t += rng.randint(1, 2 * self.gap - 1)
        r = rng.random()
        if r < 0.94:
            ts = self.t
        elif r < 0.99:
            ts = self.t - rng.randrange(LATENESS)
        else:
            ts = self.t - rng.randrange(LATENESS, 7 * DAY)
        self.n += 1
        cats = (MERCHANTS[int(rng.paretovariate(1.2)) % 1000], rng.choice(DEVICES))
        return ts, rng.randrange(100, 500_000), cats, self.n

    def history(self, count: int) -> list[tuple[int, int, tuple[str, str], int]]:
        return [self.next() for _ in range(count)]

    def held_events(self, count: int) -> Iterator[HeldEvent]:
        """The next `count` payments as the processor hands them to the user store."""
        for _ in range(count):
            ts, value, cats, n = self.next()
            yield HeldEvent(f"ppay-{RUN_ID}-{n}", U_PAYMENT, ts, value, cats)


class BruteForce:
    """Baseline: sorted columns, every aggregate of every horizon recomputed per event."""

    def __init__(self, events: list) -> None:
        evs = sorted(events, key=lambda e: e[0])
        self.ts = [e[0] for e in evs]
        self.val = [e[1] for e in evs]
        self.m = [e[2][0] for e in evs]
        self.d = [e[2][1] for e in evs]
        self.end = self.ts[-1]

    def add(self, ts: int, value: int, cats: tuple[str, str]) -> list[tuple]:
        self.end = max(self.end, ts)
        if ts > self.end - WIDEST:
            j = bisect_right(self.ts, ts)
            self.ts.insert(j, ts)
            self.val.insert(j, value)
            self.m.insert(j, cats[0])
            self.d.insert(j, cats[1])
        k = bisect_right(self.ts, self.end - WIDEST)
        if k:
            for col in (self.ts, self.val, self.m, self.d):
                del col[:k]
        out = []
        for h in HORIZONS:
            s = bisect_right(self.ts, self.end - h)
            v = self.val[s:]
            n = len(v)
            tot = sum(v)
            sq = sum(x * x for x in v)
            out.append(
                (
                    n,
                    tot,
                    tot / n if n else 0.0,
                    ((n * sq - tot * tot) ** 0.5) / n if n else 0.0,
                    max(v) if v else None,
                    len(set(self.m[s:])),
                    len(set(self.d[s:])),
                )
            )
        return out


def query_all(w: SlidingWindows) -> list[tuple]:
    return [
        (w.count(i), w.sum(i), w.mean(i), w.std(i), w.max(i), w.distinct(i, 0), w.distinct(i, 1))
        for i in range(len(HORIZONS))
    ]


def bench_update(held: int, n_fast: int, n_brute: int) -> dict:
    stream = Stream(held, seed=held)
    hist = stream.history(held * 3 // 2)  # past the widest horizon: steady state
    w = SlidingWindows.from_events(SPEC, hist)
    bf = BruteForce([e for e in hist if e[0] > w.end - WIDEST])
    new = stream.history(n_fast)
    per_path: dict[AddPath, list[int]] = {p: [] for p in AddPath}
    clock = time.perf_counter_ns
    gc.collect()
    t0 = time.perf_counter()
    for ts, value, cats, eid in new:
        a = clock()
        p = w.add(ts, value, cats, eid)
        per_path[p].append(clock() - a)
    upd = (time.perf_counter() - t0) / n_fast
    w2 = SlidingWindows.from_events(SPEC, hist)
    t0 = time.perf_counter()
    for ts, value, cats, eid in new:
        w2.add(ts, value, cats, eid)
        query_all(w2)
    updq = (time.perf_counter() - t0) / n_fast
    for ts, value, cats, _ in new[: n_brute // 10]:  # warm the baseline's columns
        bf.add(ts, value, cats)
    t0 = time.perf_counter()
    for ts, value, cats, _ in new[n_brute // 10 : n_brute // 10 + n_brute]:
        bf.add(ts, value, cats)
    brute = (time.perf_counter() - t0) / n_brute
    return {
        "held": len(w),
        "upd": upd,
        "updq": updq,
        "brute": brute,
        "paths": {p: (sum(v) / len(v) / 1e3 if v else float("nan"), len(v)) for p, v in per_path.items()},
    }


def bench_memory(held: int, extra: int) -> tuple[float, float]:
    """tracemalloc bytes per held event over a steady-state run: (mean, worst)."""
    stream = Stream(held, seed=3)
    hist = stream.history(held * 3 // 2)
    new = stream.history(extra)  # made before tracing: the window's growth is what counts
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    # Fresh category strings, as decoded records give: the ones the window interns count.
    fresh = ((ts, v, (m.encode().decode(), d.encode().decode()), n) for ts, v, (m, d), n in hist)
    w = SlidingWindows.from_events(SPEC, fresh)
    del fresh
    gc.collect()
    samples = []
    for j, (ts, value, cats, eid) in enumerate(new):
        w.add(ts, value, cats, eid)
        if j % 500 == 0:
            samples.append((tracemalloc.get_traced_memory()[0] - base) / len(w))
    tracemalloc.stop()
    return sum(samples) / len(samples), max(samples)


# ---------------------------------------------------------------- the worker's persistence path


class _Sink:
    """An entity that keeps nothing: fills a table with chunks without paying for the windows
    (the chunks an EntityStore writes do not depend on its entity)."""

    latest = -1
    late_events = too_old_events = 0

    def apply(self, ev: HeldEvent) -> None:
        pass

    def rebuild(self, events_by_series: object, end: int) -> None:
        pass


def user_store(kv: DictKV, factory: Callable[[], object] | None = None) -> EntityStore:
    """A user store configured as the processor configures it."""
    return EntityStore(b"u", kv, factory or (lambda: UserState(CFG)), CFG.retention_ms)


def write_bytes(writes: list[tuple[bytes, bytes | None]]) -> int:
    """Changelog bytes of KV writes: key + value, a tombstone counts its key."""
    return sum(len(k) + len(v) if v is not None else len(k) for k, v in writes)


def bench_store_changelog(held: int, n: int) -> dict:
    """Bytes written per event by one user's store, one event per batch (the worst case)."""
    stream = Stream(held, seed=7 + held)
    kv = DictKV()
    store = user_store(kv)
    slot = store.slot("user-00012345", 0)
    # Warm up to the steady state (past the widest window) with large batches: cheap, and the
    # chunk layout is the same whatever the batching.
    for j, ev in enumerate(stream.held_events(held * 3 // 2)):
        store.add(slot, ev)
        store.expire(slot, slot.entity.latest)
        if j % 1000 == 999:
            store.flush()
    store.flush()
    kv.writes.clear()
    total = line_bytes = 0
    gc.collect()
    t0 = time.perf_counter()
    for j, ev in enumerate(stream.held_events(n)):
        line_bytes += len(ev.encode())
        store.add(slot, ev)  # what Processor._payment does per event, minus the decision
        store.expire(slot, slot.entity.latest)
        store.flush()
        if j % 1000 == 999:  # drain the write log so it does not hold every rewritten chunk
            total += write_bytes(kv.writes)
            kv.writes.clear()
    elapsed = time.perf_counter() - t0
    total += write_bytes(kv.writes)
    slot.entity.features()  # advances the windows to the user's clock, so len() is the held count
    return {
        "held": len(slot.entity.payments),
        "bpe": total / n,
        "line": line_bytes / n,
        "us": elapsed / n * 1e6,
        "chunks": len(kv.data) - 1,
    }


def fill_users(kv: DictKV, users: int, per_user: int, seed: int) -> None:
    """Write `users` users' chunks, `per_user` held events each, through an EntityStore."""
    store = user_store(kv, _Sink)
    for u in range(users):
        slot = store.slot(f"user-{u:08d}", 0)
        for j, ev in enumerate(Stream(per_user, seed + u).held_events(per_user)):
            store.add(slot, ev)
            if j % 4096 == 4095:
                store.flush()
        store.flush()
    kv.writes.clear()


def replay_load(store: EntityStore, entity_id: str) -> UserState:
    """Baseline: the previous EntityStore._load, one orjson line and one apply() per event."""
    entity = store.factory()
    meta = orjson.loads(store.kv.get(store._meta_key(entity_id)))
    held: list[HeldEvent] = []
    for seq in range(meta["first"], meta["next"] + 1):
        blob = store.kv.get(store._chunk_of(store._meta_key(entity_id), seq))
        for line in (blob or b"").splitlines():
            eid, series, ts, value, *cats = orjson.loads(line)
            held.append(HeldEvent(eid, series, ts, value, tuple(cats)))
    held.sort(key=lambda e: e.ts)
    for ev in held:
        entity.apply(ev)
    return entity


def bench_store_rebuild(users: int, per_user: int, baseline: bool) -> dict:
    """Seconds to load every user back through EntityStore._load (and the replay baseline)."""
    kv = DictKV()
    fill_users(kv, users, per_user, seed=11)
    ids = [f"user-{u:08d}" for u in range(users)]
    gc.collect()
    store = user_store(kv)
    t0 = time.perf_counter()
    slots = [store._load(i, 0) for i in ids]
    t_load = time.perf_counter() - t0
    feats = [s.entity.features() for s in slots]
    held = sum(len(s.entity.payments) for s in slots)
    del slots
    t_old = None
    if baseline:
        gc.collect()
        t0 = time.perf_counter()
        old = [replay_load(store, i) for i in ids]
        t_old = time.perf_counter() - t0
        assert [e.features() for e in old] == feats, "bulk rebuild differs from the replay"
    return {"load": t_load, "old": t_old, "held": held, "events": users * per_user}


def bench_loaded_memory(held: int) -> dict:
    """tracemalloc bytes per held event of a user loaded by EntityStore._load."""
    kv = DictKV()
    fill_users(kv, 1, held, seed=23)
    store = user_store(kv)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    slot: Slot = store._load("user-00000000", 0)
    gc.collect()
    total, peak = tracemalloc.get_traced_memory()
    n = len(slot.entity.payments)
    slot.seen.clear()  # what the dedupe set of event ids costs on its own
    gc.collect()
    no_seen = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {
        "held": n,
        "slot": (total - base) / n,
        "entity": (no_seen - base) / n,
        "seen": (total - no_seen) / n,
        "peak": (peak - base) / n,
    }

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller samples, skip 1M memory and baseline")
    args = ap.parse_args()
    q = args.quick
    started = time.perf_counter()
    print(f"user payments spec (worker default): horizons {HORIZONS} ms, dims merchant(1000)/device(20),")
    print(f"lateness {LATENESS // HOUR}h; store retention {CFG.retention_ms // DAY} d, chunks of 32 lines")
    print("stream: 94% in order, 5% late <1h, 1% late 1h..7d\n")

    print("== engine: per-event update (us) vs brute-force recompute of all aggregates, all horizons")
    print(f"{'held':>8} {'update':>8} {'upd+query':>10} {'brute':>10} {'ratio':>8}   per path us (n)")
    rows = {}
    for held, n_fast, n_brute in ((1_000, 20_000, 2_000), (10_000, 20_000, 500), (100_000, 20_000, 60)):
        if q:
            n_fast, n_brute = n_fast // 4, max(20, n_brute // 4)
        r = bench_update(held, n_fast, n_brute)
        rows[held] = r
        paths = "  ".join(f"{p.name[:9]} {us:.1f}({n})" for p, (us, n) in r["paths"].items() if n)
        print(
            f"{r['held']:>8} {r['upd'] * 1e6:>8.2f} {r['updq'] * 1e6:>10.2f}"
            f" {r['brute'] * 1e6:>10.0f} {r['brute'] / r['updq']:>7.0f}x   {paths}"
        )

    print("\n== engine: memory per held event (tracemalloc, steady state incl. dead prefix)")
    mem = {}
    for held in (100_000,) if q else (100_000, 1_000_000):
        mean, worst = bench_memory(held, 20_000 if held <= 100_000 else 30_000)
        mem[held] = worst
        print(f"{held:>8} held: mean {mean:.1f} B, worst {worst:.1f} B")

    print("\n== store: changelog bytes per event, as the worker writes them")
    print("   one user, EntityStore + UserState on a DictKV, add + expire + flush per event")
    print("   (one event per batch: the worst case); bytes = key + value of every put, key of a tombstone")
    print(f"{'held':>8} {'B/event':>8} {'line B':>7} {'rewrite':>8} {'chunks':>7} {'us/event':>9}")
    cl = {}
    for held in (1_000, 100_000):
        r = bench_store_changelog(held, 5_000 if q else 20_000)
        cl[held] = r["bpe"]
        print(
            f"{r['held']:>8} {r['bpe']:>8.1f} {r['line']:>7.1f} {r['bpe'] / r['line']:>7.1f}x"
            f" {r['chunks']:>7} {r['us']:>9.1f}"
        )

    print("\n== store: rebuild of 1M held events through EntityStore._load (DictKV of orjson chunks)")
    rb = {}
    for users, per_user in ((1, 1_000_000), (8, 125_000)):
        r = bench_store_rebuild(users, per_user, baseline=not q)
        rb[users] = r
        line = f"{users} user(s) x {per_user}: load {r['load']:.2f} s ({r['held']} held)"
        if r["old"] is not None:
            line += f"; replay baseline (one apply per event) {r['old']:.2f} s = {r['old'] / r['load']:.1f}x"
        print(line)

    print("\n== store: memory of a user loaded by EntityStore._load (tracemalloc)")
    lm = bench_loaded_memory(20_000 if q else 100_000)
    print(
        f"{lm['held']:>8} held: {lm['slot']:.1f} B/event retained = windows+chunk index {lm['entity']:.1f}"
        f" + seen event ids {lm['seen']:.1f}; peak during load {lm['peak']:.1f}"
    )

    print("\n== targets")
    ratio10k = rows[10_000]["brute"] / rows[10_000]["updq"]
    flat = max(cl.values()) / min(cl.values()) - 1
    checks = [
        (f"update+query >= 50x faster than brute force at 10k: {ratio10k:.0f}x", ratio10k >= 50),
        (f"store changelog B/event flat within 20% (1k vs 100k held): {flat * 100:.1f}%", flat <= 0.20),
        (f"engine memory <= 150 B/held event at 100k: {mem[100_000]:.1f}", mem[100_000] <= 150),
    ]
    if 1_000_000 in mem:
        checks.append(
            (f"engine memory <= 150 B/held event at 1M: {mem[1_000_000]:.1f}", mem[1_000_000] <= 150)
        )
    for users, r in rb.items():
        label = f"rebuild 1M held events ({users} user(s)) via EntityStore._load <= 10 s: {r['load']:.2f} s"
        checks.append((label, r["load"] <= 10))
    return report(checks, started)


if __name__ == "__main__":
    raise SystemExit(main())
