"""Chaos run with printed figures: steady traffic into two workers on 4 partitions, SIGKILLs of a random
worker with restarts, a third worker joining and one stopping gracefully; then the checks of
tests/integration/test_chaos.py (which runs the same thing, shorter) and the latency target.

Run: .venv/bin/python scripts/chaos.py [--tansu] [--duration 120] [--rate 400] [--kills 6]
     [--session-timeout S] [--heartbeat S] [--keep]
Prints sent, decided, lost, repeated, the recovery time after each kill (first decision on the killed
worker's partitions), the worst produce->decision latency of payments sent around each kill, and the
rebalances the workers saw. On a broker with static group membership (Apache Kafka) each worker is a
static member and a killed one is restarted under its group instance id and web port.
The workers' session timeout is the shortest the broker takes (6 s on Apache Kafka, 3 s on Tansu).
`--kills 0` is a calm run: steady traffic and no fault, so every rebalance counted is a false positive
(a live worker expelled), e.g. with a shorter `--session-timeout`.
Exit code 0 when every check and target passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.chaos

from _bench import report  # scripts/_bench.py
from tests.chaos import ChaosPlan, ChaosRun

from streamrisk.broker import start_broker

WORST_LATENCY_TARGET_S = 15.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tansu", action="store_true", help="Tansu instead of Apache Kafka")
    ap.add_argument("--duration", type=float, default=120.0, help="seconds of traffic")
    ap.add_argument("--rate", type=float, default=400.0, help="events/s (default mix, ~59%% payments)")
    ap.add_argument("--kills", type=int, default=6,
                    help="SIGKILLs of a random worker (>= 3; 0: a calm run with no fault at all, to count "
                         "the rebalances no fault caused)")
    ap.add_argument("--session-timeout", type=float, default=None,
                    help="the workers' STREAMRISK_SESSION_TIMEOUT_S (default: the shortest the broker takes, "
                         "EmbeddedBroker.shortest_session_timeout_s: 6 s on Apache Kafka, 3 s on Tansu)")
    ap.add_argument("--heartbeat", type=float, default=0.5, help="STREAMRISK_HEARTBEAT_INTERVAL_S")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--merchants", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--keep", action="store_true", help="keep the worker logs (their folder is printed)")
    args = ap.parse_args()
    if 0 < args.kills < 3:
        ap.error("--kills must be 0 or at least 3")
    started = time.perf_counter()
    kind = "tansu" if args.tansu else "kafka"
    # Wall clock too, to line the events up with the worker logs (--keep).
    say = lambda msg: print(f"[{time.strftime('%H:%M:%S')} {time.perf_counter() - started:6.1f} s] {msg}",  # noqa: E731
                            flush=True)
    plan = ChaosPlan(duration_s=args.duration, rate=args.rate, kills=args.kills, users=args.users,
                     merchants=args.merchants, seed=args.seed, drain_s=180.0, say=say)
    tmp = tempfile.mkdtemp(prefix="streamrisk-chaos-") if args.keep else None
    with tempfile.TemporaryDirectory(prefix="streamrisk-chaos-") as scratch, start_broker(kind) as broker:
        work = Path(tmp or scratch)
        plan.static_members = broker.supports("static_membership")
        env = {"STREAMRISK_SESSION_TIMEOUT_S": str(args.session_timeout or broker.shortest_session_timeout_s),
               "STREAMRISK_HEARTBEAT_INTERVAL_S": str(args.heartbeat)}
        say(f"{kind} broker at {broker.bootstrap}; worker logs in {work}; static group members: "
            f"{'yes' if plan.static_members else 'no'}")
        result = asyncio.run(ChaosRun(broker.bootstrap, work, plan, **env).run())
    print(f"\nchaos on {kind}: {args.duration:.0f} s at {args.rate:.0f} events/s, {args.kills} kills"
          + "".join(f", {var}={value}" for var, value in env.items()))
    print(result.report())
    worst = max((k.worst_latency_s for k in result.kills), default=math.inf)
    recovery = max((k.recovery_s for k in result.kills if k.recovery_s is not None), default=0.0)
    print(f"\nslowest recovery after a kill: {recovery:.1f} s")
    checks = list(result.checks)
    if args.kills:
        checks.append((f"worst produce->decision latency around a kill <= {WORST_LATENCY_TARGET_S:.0f} s "
                       f"(got {worst:.1f} s)", worst <= WORST_LATENCY_TARGET_S))
    return report(checks, started)


if __name__ == "__main__":
    raise SystemExit(main())
