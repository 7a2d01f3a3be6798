"""Benchmark of streamrisk.windows: update cost vs brute force, changelog bytes, memory, rebuild.

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
from pathlib import Path

try:
    from streamrisk.windows import (
        AddPath,
        SlidingWindows,
        WindowSpec,
        decode_event,
        encode_event,
        encode_key,
        event_tag,
    )
except ImportError:  # not installed: run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from streamrisk.windows import (
        AddPath,
        SlidingWindows,
        WindowSpec,
        decode_event,
        encode_event,
        encode_key,
        event_tag,
    )

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
HORIZONS = (5 * MIN, HOUR, DAY, 30 * DAY)
LATENESS = HOUR
SPEC = WindowSpec(HORIZONS, dims=("merchant", "device"), lateness=LATENESS, ids=True)
T0 = 1_732_000_000_000
MERCHANTS = [f"m{i:06d}" for i in range(1000)]
DEVICES = [f"dev-{i:02d}" for i in range(20)]


class Stream:
    """Synthetic payments of one user: ~94% in order, 5% late within 1h, 1% later."""

    def __init__(self, held: int, seed: int) -> None:
        self.gap = HORIZONS[-1] // held  # steady state holds ~`held` events in the widest
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
        if ts > self.end - HORIZONS[-1]:
            j = bisect_right(self.ts, ts)
            self.ts.insert(j, ts)
            self.val.insert(j, value)
            self.m.insert(j, cats[0])
            self.d.insert(j, cats[1])
        k = bisect_right(self.ts, self.end - HORIZONS[-1])
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
    bf = BruteForce([e for e in hist if e[0] > w.end - HORIZONS[-1]])
    new = stream.history(n_fast)
    per_path: dict[AddPath, list[int]] = {p: [] for p in AddPath}
    clock = time.perf_counter_ns
    gc.collect()
    t0 = time.perf_counter()
    for ts, value, cats, eid in new:
        a = clock()
        p = w.add(ts, value, cats, eid)
        per_path[p].append(clock() - a)
        w.pop_expired()
    upd = (time.perf_counter() - t0) / n_fast
    w2 = SlidingWindows.from_events(SPEC, hist)
    t0 = time.perf_counter()
    for ts, value, cats, eid in new:
        w2.add(ts, value, cats, eid)
        w2.pop_expired()
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


def bench_changelog(held: int, n: int) -> float:
    """Bytes written per event: record (key + value) when held, tombstone key when expired."""
    stream = Stream(held, seed=7 + held)
    hist = stream.history(held * 3 // 2)
    w = SlidingWindows.from_events(SPEC, hist)
    w.pop_expired()
    entity = "user-00012345"
    total = 0
    for ts, value, cats, n_ in stream.history(n):
        tag = event_tag(f"evt-{n_:012d}")
        if w.add(ts, value, cats, tag) is not AddPath.TOO_OLD:
            total += len(encode_key(entity, tag)) + len(encode_event(0, ts, value, cats))
        for gone in w.pop_expired():
            total += len(encode_key(entity, gone))  # tombstone: key, null value
    return total / n


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
        w.pop_expired()
        if j % 500 == 0:
            samples.append((tracemalloc.get_traced_memory()[0] - base) / len(w))
    tracemalloc.stop()
    return sum(samples) / len(samples), max(samples)


def bench_rebuild(held: int) -> tuple[float, float, int]:
    stream = Stream(held, seed=11)
    hist = stream.history(held)
    random.Random(5).shuffle(hist)  # a changelog table yields records in key order
    recs = [encode_event(0, ts, v, c) for ts, v, c, _ in hist]
    gc.collect()
    t0 = time.perf_counter()
    decoded = [decode_event(r) for r in recs]
    t_dec = time.perf_counter() - t0
    evs = [(ts, v, c, n) for (_, ts, v, c), (*_, n) in zip(decoded, hist, strict=True)]
    del decoded, recs
    gc.collect()
    t0 = time.perf_counter()
    w = SlidingWindows.from_events(SPEC, evs)
    t_build = time.perf_counter() - t0
    return t_dec, t_build, len(w)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller samples, skip 1M memory")
    args = ap.parse_args()
    q = args.quick
    started = time.perf_counter()
    print(f"horizons {HORIZONS} ms, dims merchant(1000)/device(20), lateness 1h, ids on")
    print("stream: 94% in order, 5% late <1h, 1% late 1h..7d\n")

    print("== per-event update (us) vs brute-force recompute of all aggregates, all horizons")
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

    print("\n== changelog bytes per event (record key+value, + tombstone key on expiry)")
    cl = {held: bench_changelog(held, 5_000 if q else 20_000) for held in (1_000, 100_000)}
    for held, b in cl.items():
        print(f"{held:>8} held: {b:.1f} B/event")

    print("\n== memory per held event (tracemalloc, steady state incl. dead prefix)")
    mem = {}
    for held in (100_000,) if q else (100_000, 1_000_000):
        mean, worst = bench_memory(held, 20_000 if held <= 100_000 else 30_000)
        mem[held] = worst
        print(f"{held:>8} held: mean {mean:.1f} B, worst {worst:.1f} B")

    print("\n== rebuild from 1M held events (shuffled input)")
    t_dec, t_build, n = bench_rebuild(1_000_000)
    print(f"decode 1M records {t_dec:.2f} s; from_events {t_build:.2f} s ({n} held)")

    print("\n== targets")
    ratio10k = rows[10_000]["brute"] / rows[10_000]["updq"]
    flat = max(cl.values()) / min(cl.values()) - 1
    checks = [
        (f"update+query >= 50x faster than brute force at 10k: {ratio10k:.0f}x", ratio10k >= 50),
        (f"changelog B/event flat within 20% (1k vs 100k): {flat * 100:.1f}%", flat <= 0.20),
        (f"memory <= 150 B/held event at 100k: {mem[100_000]:.1f}", mem[100_000] <= 150),
        (f"rebuild 1M held events <= 10 s: {t_build:.2f} s", t_build <= 10),
    ]
    if 1_000_000 in mem:
        checks.append((f"memory <= 150 B/held event at 1M: {mem[1_000_000]:.1f}", mem[1_000_000] <= 150))
    for label, ok in checks:
        print(f"{'PASS' if ok else 'MISS'}  {label}")
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
