"""`streamrisk demo` and `streamrisk loadtest`: an embedded broker (or `--bootstrap`), N workers,
labelled scenario traffic with a progress bar, then the tables (and, for the load test, report.json
and plots).

Every process started here dies with it, also on Ctrl-C or if this process itself is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from rich.console import Console

from .broker import BrokerError, start_broker, worker_env_for
from .loadgen.loadtest import LoadtestConfig, LoadtestResult, run_loadtest
from .procs import free_port, log_tail, spawn, terminate
from .settings import Settings


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    web_port: int
    log_path: Path


@dataclass
class Stack:
    """What this command started: workers (and the broker, through the context manager)."""

    bootstrap: str
    settings: Settings
    workers: list[Worker] = field(default_factory=list)

    def start_worker(self, work: Path) -> Worker:
        """`streamrisk worker` as a child process of ours, in the group of the others."""
        web_port = free_port()
        n = len(self.workers)
        env = {
            **os.environ,
            "STREAMRISK_BOOTSTRAP": self.bootstrap,
            "STREAMRISK_TOPIC_PREFIX": self.settings.topic_prefix,
            "STREAMRISK_APP_ID": self.settings.app_id,
            "STREAMRISK_DATA_DIR": str(work / f"worker-{n}"),
            "STREAMRISK_WEB_PORT": str(web_port),
            "STREAMRISK_SESSION_TIMEOUT_S": "6",
            "STREAMRISK_HEARTBEAT_INTERVAL_S": "0.5",
            "STREAMRISK_LOG_LEVEL": os.environ.get("STREAMRISK_LOG_LEVEL", "warning"),
            **worker_env_for(self.bootstrap),
        }
        log_path = work / f"worker-{n}.log"
        proc = spawn([sys.executable, "-m", "streamrisk", "worker"], log_path=log_path, env=env)
        worker = Worker(proc, web_port, log_path)
        self.workers.append(worker)
        return worker

    def dead(self) -> Worker | None:
        return next((w for w in self.workers if w.proc.poll() is not None), None)

    async def ready(self) -> bool:
        """Every worker we started answers /stats and holds input partitions (when there are enough
        for all): the group has settled, so no rebalance lands in the measured traffic."""
        if not self.workers:
            return True
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            for w in self.workers:
                try:
                    async with session.get(f"http://127.0.0.1:{w.web_port}/stats") as resp:
                        if resp.status != 200:
                            return False
                        body = await resp.json()
                except (TimeoutError, aiohttp.ClientError):
                    return False
                parts = body.get("assigned_partitions")
                if parts is None:
                    return True  # this worker does not report its assignment; the warm-up must do
                if not parts and len(self.workers) <= self.settings.partitions:
                    return False
        return True

    def stop(self) -> None:
        for w in self.workers:
            terminate(w.proc, grace=10)


@contextlib.contextmanager
def stack(args: argparse.Namespace, settings: Settings, work: Path, default_workers: int) -> Iterator[Stack]:
    """The embedded broker (unless --bootstrap) and the workers to start; all stopped on exit."""
    n = default_workers if args.workers is None else args.workers
    if args.bootstrap:
        s = Stack(args.bootstrap, settings)
        try:
            for _ in range(n):
                s.start_worker(work)
            yield s
        finally:
            s.stop()
        return
    kind = "tansu" if args.tansu else "kafka"
    t0 = time.monotonic()
    _say(f"streamrisk: starting the embedded {kind} broker ...")
    with start_broker(kind, data_dir=work / "broker") as broker:
        _say(f"streamrisk: {kind} broker ready at {broker.bootstrap} ({time.monotonic() - t0:.1f} s)")
        s = Stack(broker.bootstrap, settings)
        try:
            for _ in range(max(1, n)):
                w = s.start_worker(work)
                _say(f"streamrisk: worker started (pid {w.proc.pid}, HTTP on 127.0.0.1:{w.web_port})")
            yield s
        finally:
            s.stop()


_RETRIED = ("NotLeaderForPartition", "not found in cluster metadata", "UnknownTopicOrPartition")


def _quiet_retries(record: logging.LogRecord) -> bool:
    """Drop aiokafka's lines about retries it makes itself while the workers create their topics
    and a new Kafka topic elects its leaders; everything else still shows."""
    return not any(part in record.getMessage() for part in _RETRIED)


def config_from(args: argparse.Namespace) -> LoadtestConfig:
    return LoadtestConfig(
        rate=None if args.max else args.rate, duration_s=args.duration, users=args.users,
        merchants=args.merchants, days=args.days, scenario_mix=args.scenario_mix,
        malformed=args.malformed, seed=args.seed,
    )


def run_load(args: argparse.Namespace, settings: Settings, *, demo: bool) -> int:
    """Body of `streamrisk demo` (demo=True: one worker, tables only) and `streamrisk loadtest`."""
    from .loadgen.report import build_report, print_report, write_outputs
    from .loadgen.scenarios import parse_mix

    if not demo:  # like every client command, the load test honours STREAMRISK_BOOTSTRAP
        args.bootstrap = args.bootstrap or os.environ.get("STREAMRISK_BOOTSTRAP")
    problems = [f"--{name} must be > 0 (got {value:g})" for name, value in
                (("rate", args.rate), ("duration", args.duration), ("days", args.days),
                 ("users", args.users), ("merchants", args.merchants)) if not value > 0]
    if args.workers is not None and args.workers < 0:
        problems.append(f"--workers must be >= 0 (got {args.workers})")
    try:
        parse_mix(args.scenario_mix)
    except ValueError as exc:
        problems.append(str(exc))
    if problems:  # usage errors, before anything starts
        _say("streamrisk: " + "; ".join(problems))
        return 2
    for name in ("aiokafka", "aiokafka.consumer.fetcher", "aiokafka.producer.sender", "aiokafka.cluster"):
        logging.getLogger(name).addFilter(_quiet_retries)
    console = Console(stderr=True)
    out = Console()
    if not out.is_terminal:  # a file or a pipe: wide enough for the quality table
        out = Console(width=170)
    config = config_from(args)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="streamrisk-run-") as tmp:
        work = Path(tmp)
        try:
            with stack(args, settings, work, default_workers=1 if (demo or not args.bootstrap) else 0) as s:
                _say("streamrisk: warming up (waiting for the workers to decide) ...")
                try:
                    result: LoadtestResult = asyncio.run(run_loadtest(
                        s.bootstrap, config, prefix=settings.topic_prefix, app_id=settings.app_id,
                        ready=s.ready, console=console))
                except TimeoutError as exc:
                    _say(f"streamrisk: {exc}")
                    for w in s.workers:
                        _say(f"--- {w.log_path.name} ---\n{log_tail(w.log_path)}")
                    return 1
                result.workers = len(s.workers) if s.workers else result.workers
                result.broker = "external" if args.bootstrap else ("tansu" if args.tansu else "kafka")
                _say(f"streamrisk: run done (the warm-up before it took {result.warmup_s:.1f} s)")
                dead = s.dead()
                if dead is not None:
                    _say(f"streamrisk: a worker died:\n{log_tail(dead.log_path)}")
                    return 1
        except BrokerError as exc:
            _say(f"streamrisk: cannot start the embedded broker: {exc}")
            return 1
    report = build_report(result)
    print_report(report, out)
    if not demo and settings.credit_enabled:
        from .loadgen.losses import credit_losses

        _say("streamrisk: credit losses: what was sent, replayed under the adaptive and the static policy")
        text, report["credit_losses"] = credit_losses(result.sent, result.traffic.labels, settings)
        out.print(text, markup=False, highlight=False)
    target = args.out if args.out is not None else (None if demo else Path("loadtest-report"))
    if target is not None:
        written = write_outputs(result, report, Path(target))
        out.print(f"wrote {', '.join(str(p) for p in written)}")
    _say(f"streamrisk: stopped everything ({time.monotonic() - t0:.1f} s in all)")
    return 0 if result.watch.decided else 1


def run_demo(args: argparse.Namespace) -> int:
    return run_load(args, Settings.from_env(), demo=True)
