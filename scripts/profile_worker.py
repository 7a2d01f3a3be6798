"""Where a worker's CPU goes under live load: a py-spy profile of one worker deciding payments at a fixed
rate on the embedded broker (Apache Kafka by default), summarised as the functions holding the GIL.

One warm worker, payments only, `--rate` payments/s for `--seconds`; py-spy samples the worker (only the
thread holding the GIL, `--gil`: what the cores actually run) while the load generator runs. Prints the
produce -> decision latency, the worker's CPU per payment, and the top functions by inclusive and by
own ("self") share of the samples. `--src DIR` runs the worker from another checkout's `src/` (e.g. an
older commit in a `git worktree`), for a before/after comparison on the same machine and broker.

Needs py-spy: `.venv/bin/pip install py-spy` (a profiler, not a dependency of StreamRisk).

Run: .venv/bin/python scripts/profile_worker.py [--rate 1000] [--seconds 8] [--src DIR] [--top 25]
     [--env NAME=VALUE ...]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.harness

from bench_pipeline import PAYMENTS_ONLY, Decisions, create_topics, uid
from tests.harness import WorkerProcess, cpu_seconds

from streamrisk.broker import start_broker
from streamrisk.loadgen.produce import produce
from streamrisk.loadgen.synthetic import Traffic


def summarise(raw: Path, top: int) -> list[str]:
    """Inclusive and self shares per function from py-spy's raw (collapsed stack) output."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        names = []
        for frame in stack.split(";"):
            func, _, where = frame.strip().partition(" (")
            names.append(f"{func} ({where.rsplit(':', 1)[0].rsplit('/', 1)[-1]})")
        own[names[-1]] += n
        for name in set(names):
            incl[name] += n
    # The entry frames every sample of a thread shares (runpy, the CLI, the thread bootstrap) say nothing.
    shared = max(incl.values(), default=0)
    out = [f"{total} samples holding the GIL", "  inclusive (entry frames left out):"]
    out += [f"    {v / total:6.1%}  {k}" for k, v in incl.most_common(top + 12) if v < shared][:top]
    out += ["  self:"] + [f"    {v / total:6.1%}  {k}" for k, v in own.most_common(top)]
    return out


async def run(bootstrap: str, work: Path, args: argparse.Namespace, py_spy: str) -> None:
    prefix = uid("profile") + "."
    await create_topics(bootstrap, prefix)
    env = dict(kv.split("=", 1) for kv in args.env)
    if args.src:
        env["PYTHONPATH"] = str(Path(args.src).resolve() / "src")
    worker = WorkerProcess(bootstrap, prefix, uid("profile"), work / "w", **env).start()
    try:
        async with Decisions(bootstrap, prefix + "risk-decisions", {}) as out:
            sent: dict[str, float] = {}
            traffic = Traffic(users=2000, merchants=200, seed=11, mix=PAYMENTS_ONLY, run_id=prefix)
            arrived = out.first  # event_id -> arrival time of its first decision

            async def drain(timeout: float) -> None:
                deadline = time.monotonic() + timeout
                while any(e not in arrived for e in sent) and time.monotonic() < deadline:
                    await out.poll(20)

            def on_send(topic: str, key: str, eid: str | None, at: float) -> None:
                sent[eid or ""] = at

            warm = [traffic.payment(int(time.time() * 1000)) for _ in range(20)]
            await produce(bootstrap, warm, rate=100, topic_prefix=prefix, on_send=on_send)
            await drain(120)
            if any(e not in arrived for e in sent):
                raise RuntimeError(f"the worker decided nothing in 120 s:\n{worker.log()}")
            sent.clear()
            raw = work / "profile.txt"
            assert worker.proc is not None
            spy = subprocess.Popen(
                [py_spy, "record", "--gil", "--nonblocking", "-r", "200", "-d", str(round(args.seconds)),
                 "-f", "raw", "-o", str(raw), "-p", str(worker.proc.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )
            c0 = cpu_seconds(worker.proc.pid)
            stream = (traffic.payment(int(time.time() * 1000)) for _ in iter(int, 1))
            job = asyncio.create_task(produce(bootstrap, stream, rate=args.rate, duration_s=args.seconds,
                                              topic_prefix=prefix, on_send=on_send))
            while not job.done():
                await out.poll(20)
            job.result()
            await drain(60)
            cpu = cpu_seconds(worker.proc.pid) - c0
            _, err = spy.communicate(timeout=60)
            ms = sorted((arrived[e] - at) * 1000 for e, at in sent.items() if e in arrived)
            if not ms:
                raise RuntimeError("no decision arrived")
            print(f"{len(sent)} payments at {args.rate}/s: {len(sent) - len(ms)} undecided; "
                  f"produce -> decision p50 {ms[len(ms) // 2]:.1f} ms, p99 {ms[int(len(ms) * 0.99)]:.1f} ms; "
                  f"worker CPU {cpu / len(ms) * 1e6:.0f} us per payment")
            if not raw.exists():
                raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-500:]}")
            print("\n".join(summarise(raw, args.top)))
    finally:
        worker.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tansu", action="store_true", help="Tansu instead of Apache Kafka")
    ap.add_argument("--rate", type=int, default=1000, help="payments/s")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--src", help="a checkout whose src/ the worker runs from (default: this one)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="worker environment, e.g. --env STREAMRISK_FETCH_MIN_BYTES=4096 (repeatable)")
    args = ap.parse_args()
    py_spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if py_spy is None:
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="streamrisk-profile-") as tmp, \
            start_broker("tansu" if args.tansu else "kafka") as broker:
        asyncio.run(run(broker.bootstrap, Path(tmp), args, py_spy))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
