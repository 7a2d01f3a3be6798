"""Benchmark of PaymentIndex (late chargebacks find their payment) over a DictKV, as the worker uses it.

Stream: 10k users (Zipf-like: a few heavy users), payments spread evenly over time, 2% late by up to
3 days, one flush per batch of 500 payments. Phase 1 indexes 100k payments over 180 days (the retention);
phase 2 another 100k over the next 180 days, so phase 2 runs in the steady state where chunks expire.

Figures: bytes held in the KV per payment (key + value), Python memory of a dict holding those bytes
(tracemalloc), changelog bytes per payment, and add/find cost against a plain dict of the same ids
measured in the same run.

Run: .venv/bin/python scripts/bench_payment_index.py. Ratios are within one run (noisy box).
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
import tracemalloc
from itertools import accumulate
from pathlib import Path

try:
    import streamrisk  # noqa: F401
except ImportError:  # not installed: run from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _bench import report  # scripts/_bench.py

from streamrisk.settings import DAY_MS
from streamrisk.state.kv import DictKV
from streamrisk.state.payment_index import CHUNK_LINES, CHUNK_SPAN_MS, RETENTION_MS, PaymentIndex

T0 = 1_732_000_000_000
RUN_ID = "5f3a9c1e"  # event ids look like the load generator's: "pay-<run>-<seq>"
USERS = 10_000
BATCH = 500
PARTITIONS = 8

Payment = tuple[int, str, str, str, int, int]  # partition, user, payment id, merchant, ts, amount


def stream(n: int, start_seq: int, t_start: int, span_ms: int, seed: int) -> list[Payment]:
    """`n` payments over `span_ms` from `t_start`, users drawn Zipf-like (weight 1 / (rank + 10))."""
    rng = random.Random(seed)
    cum = list(accumulate(1 / (r + 10) for r in range(USERS)))
    users = rng.choices(range(USERS), cum_weights=cum, k=n)
    out = []
    for j, u in enumerate(users):
        ts = t_start + j * span_ms // n
        if rng.random() < 0.02:
            ts -= rng.randrange(3 * DAY_MS)
        out.append(
            (
                u % PARTITIONS,
                f"user-{u:08d}",
                f"pay-{RUN_ID}-{start_seq + j}",
                f"m{int(rng.paretovariate(1.2)) % 1000:06d}",
                ts,
                rng.randrange(100, 500_000),
            )
        )
    return out


def kv_bytes(kv: DictKV) -> int:
    return sum(len(k) + len(v) for k, v in kv.data.items())


def changelog(kv: DictKV) -> tuple[int, int]:
    """(value bytes, key + value bytes) of every write; a tombstone counts its key only."""
    values = sum(len(v) for _, v in kv.writes if v is not None)
    return values, values + sum(len(k) for k, _ in kv.writes)


def index(idx: PaymentIndex, pays: list[Payment]) -> float:
    """Add every payment, one flush per batch; returns seconds."""
    gc.collect()
    t0 = time.perf_counter()
    for b in range(0, len(pays), BATCH):
        for p, user, pid, merchant, ts, amount in pays[b : b + BATCH]:
            idx.add(p, user, pid, merchant, ts, amount)
        idx.flush()
    return time.perf_counter() - t0


def dict_index(pays: list[Payment]) -> float:
    """Baseline: the same payments into a plain dict, id -> (user, merchant, ts, amount); seconds."""
    d: dict[str, tuple] = {}
    gc.collect()
    t0 = time.perf_counter()
    for _, user, pid, merchant, ts, amount in pays:
        d[pid] = (user, merchant, ts, amount)
    return time.perf_counter() - t0


def traced_copy_bytes(make: object) -> int:
    """tracemalloc bytes retained by what `make()` builds (fresh objects, nothing shared)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    held = make()  # type: ignore[operator]
    gc.collect()
    size = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del held
    return size


def time_finds(idx: PaymentIndex, queries: list[tuple[str, str]]) -> tuple[float, int]:
    gc.collect()
    t0 = time.perf_counter()
    found = sum(idx.find(u, pid) is not None for u, pid in queries)
    return (time.perf_counter() - t0) / len(queries), found


def time_dict_finds(d: dict[str, tuple], queries: list[tuple[str, str]]) -> float:
    gc.collect()
    t0 = time.perf_counter()
    found = sum(d.get(pid) is not None for _, pid in queries)
    assert found >= 0
    return (time.perf_counter() - t0) / len(queries)


def one_user_per_batch(held: int, n: int) -> float:
    """Changelog bytes (key + value) per payment for one user, one payment per batch (the worst
    case), after `held` payments are already indexed within the retention."""
    kv = DictKV()
    idx = PaymentIndex(kv)
    step = RETENTION_MS // 2 // (held + n)  # all within half the retention: nothing expires
    for i in range(held):
        idx.add(0, "user-00000001", f"pay-{RUN_ID}-{i}", "m000001", T0 + i * step, 1000)
        if i % 1000 == 999:
            idx.flush()
    idx.flush()
    kv.writes.clear()
    for i in range(held, held + n):
        idx.add(0, "user-00000001", f"pay-{RUN_ID}-{i}", "m000001", T0 + i * step, 1000)
        idx.flush()
    return changelog(kv)[1] / n


def main() -> int:
    argparse.ArgumentParser(description=__doc__).parse_args()  # --help; it takes no options
    n = 100_000  # takes ~2 s; with fewer, few chunks close and the retention check means little
    started = time.perf_counter()
    span = RETENTION_MS
    print(
        f"PaymentIndex: retention {RETENTION_MS // DAY_MS} d, chunks of <= {CHUNK_LINES} lines"
        f" spanning <= {CHUNK_SPAN_MS // DAY_MS} d; {USERS} users (Zipf-like), flush per batch of {BATCH}"
    )
    phase1 = stream(n, 0, T0, span, seed=1)
    phase2 = stream(n, n, T0 + span, span, seed=2)
    per_user: dict[str, int] = {}
    for _, u, *_rest in phase1:
        per_user[u] = per_user.get(u, 0) + 1
    heavy = max(per_user, key=per_user.__getitem__)
    print(
        f"phase 1: {n} payments over {span // DAY_MS} d, {len(per_user)} users touched,"
        f" heaviest {heavy} with {per_user[heavy]}\n"
    )

    kv = DictKV()
    idx = PaymentIndex(kv)
    t_add = index(idx, phase1)
    t_dict = dict_index(phase1)
    cl_val1, cl_all1 = changelog(kv)
    kv.writes.clear()
    held1 = kv_bytes(kv)
    keys1 = len(kv.data)

    print("== KV held after phase 1 (everything within the retention)")
    print(f"   {held1 / n:.1f} B/payment (key + value), {keys1} keys for {n} payments")
    mem_kv = traced_copy_bytes(lambda: {bytes(bytearray(k)): bytes(bytearray(v)) for k, v in kv.data.items()})

    def in_memory_dict() -> dict:
        return {
            pid.encode().decode(): (u.encode().decode(), m.encode().decode(), ts + 1, amount + 1)
            for _, u, pid, m, ts, amount in phase1
        }

    mem_dict = traced_copy_bytes(in_memory_dict)
    print(f"   Python memory of a DictKV holding it (dict + bytes, tracemalloc): {mem_kv / n:.1f} B/payment")
    print(
        f"   baseline, all in a dict id -> (user, merchant, ts, amount), fresh objects:"
        f" {mem_dict / n:.1f} B/payment"
    )

    print("\n== changelog (one flush per batch of 500)")
    print(f"   phase 1: {cl_val1 / n:.1f} value B/payment ({cl_all1 / n:.1f} with keys and tombstones)")
    t_add2 = index(idx, phase2)
    cl_val2, cl_all2 = changelog(kv)
    kv.writes.clear()
    print(
        f"   phase 2 (steady state, {idx.expired_chunks} chunks expired):"
        f" {cl_val2 / n:.1f} value B/payment ({cl_all2 / n:.1f} with keys and tombstones)"
    )
    held2 = kv_bytes(kv)
    print(
        f"   KV after phase 2 ({2 * n} indexed): {held2 / n:.1f} B per payment of the last 180 d"
        f" ({len(kv.data)} keys; {held2 / held1:.2f}x phase 1, 2x if nothing expired)"
    )
    w_small = one_user_per_batch(1_000, 2_000)
    w_big = one_user_per_batch(20_000, 2_000)
    print(
        f"   worst case, one user, one payment per batch: {w_small:.1f} B/payment with 1k indexed,"
        f" {w_big:.1f} with 20k indexed"
    )

    print("\n== cost per op (us), against a plain dict of the same ids in this run")
    us_add, us_add2, us_dict = t_add / n * 1e6, t_add2 / n * 1e6, t_dict / n * 1e6
    print(
        f"   add (incl. flush): {us_add:.2f} phase 1, {us_add2:.2f} phase 2; dict insert {us_dict:.3f}"
        f" -> {us_add / us_dict:.0f}x"
    )
    rng = random.Random(5)
    recent = phase2[-n // 2 :]  # payments well within the retention
    queries = [(u, pid) for _, u, pid, *_ in rng.sample(recent, min(20_000, len(recent)))]
    d = {pid: (u, m, ts, a) for _, u, pid, m, ts, a in phase2}
    us_find, found = time_finds(idx, queries)
    us_dfind = time_dict_finds(d, queries)
    print(
        f"   find (hit, random user): {us_find * 1e6:.2f}; dict lookup {us_dfind * 1e6:.3f}"
        f" -> {us_find / us_dfind:.0f}x ({found}/{len(queries)} found)"
    )
    misses = [(u, pid + "-x") for u, pid in queries]
    us_miss, _ = time_finds(idx, misses)
    print(f"   find (miss, reads every live chunk of the user): {us_miss * 1e6:.2f}")
    per_user2: dict[str, int] = {}
    for _, u, *_rest in phase2:
        per_user2[u] = per_user2.get(u, 0) + 1
    heavy2 = max(per_user2, key=per_user2.__getitem__)
    held_heavy = per_user2[heavy2]
    newest = max(ts for _, u, _pid, _m, ts, _a in phase2 if u == heavy2)
    oldest = min((ts, pid) for _, u, pid, _m, ts, _a in phase2 if u == heavy2 and ts > newest - RETENTION_MS)[
        1
    ]
    reps = 200
    t0 = time.perf_counter()
    for _ in range(reps):
        assert idx.find(heavy2, oldest) is not None
    us_heavy = (time.perf_counter() - t0) / reps * 1e6
    print(f"   find, oldest payment of the heaviest user ({held_heavy} in 180 d): {us_heavy:.0f}")
    t0 = time.perf_counter()
    marks = queries[:2_000]
    for u, pid in marks:
        idx.mark_fraud(int(u[-8:]) % PARTITIONS, u, pid, "cb-" + pid)
    us_mark = (time.perf_counter() - t0) / len(marks) * 1e6
    print(f"   mark_fraud (closed or flushed chunk, one chunk rewrite each): {us_mark:.2f}")

    print("\n== targets")
    flat = cl_all2 / cl_all1 - 1
    checks = [
        (f"changelog B/payment flat within 20% (phase 2 vs 1): {flat * 100:+.1f}%", flat <= 0.20),
        (
            f"worst-case changelog flat within 20% (20k vs 1k indexed): {(w_big / w_small - 1) * 100:+.1f}%",
            w_big / w_small - 1 <= 0.20,
        ),
        (f"KV bounded by the retention (360 d vs 180 d indexed): {held2 / held1:.2f}x", held2 <= held1 * 1.3),
        (f"every recent payment found: {found}/{len(queries)}", found == len(queries)),
    ]
    return report(checks, started)


if __name__ == "__main__":
    raise SystemExit(main())
