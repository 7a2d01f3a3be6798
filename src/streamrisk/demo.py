"""`streamrisk demo`: embedded broker, one worker, synthetic traffic with a live progress line, a summary.

Every process it starts dies with it, also on Ctrl-C or if the demo itself is killed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .broker import start_broker
from .loadgen.loadtest import run_loadtest, traffic_options
from .procs import free_port, log_tail, spawn, terminate


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def start_worker(bootstrap: str, work: Path) -> tuple[subprocess.Popen, int, Path]:
    """`streamrisk worker` as a child process (dies with us): the process, its HTTP port, its log."""
    web_port = free_port()
    env = {
        **os.environ,
        "STREAMRISK_BOOTSTRAP": bootstrap,
        "STREAMRISK_DATA_DIR": str(work / "worker"),
        "STREAMRISK_WEB_PORT": str(web_port),
        "STREAMRISK_SESSION_TIMEOUT_S": "6",
        "STREAMRISK_HEARTBEAT_INTERVAL_S": "0.5",
        "STREAMRISK_LOG_LEVEL": "warning",
    }
    log_path = work / "worker.log"
    worker = spawn([sys.executable, "-m", "streamrisk", "worker"], log_path=log_path, env=env)
    return worker, web_port, log_path


def run_demo(args: argparse.Namespace) -> int:
    kind = "kafka" if args.kafka else "tansu"
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="streamrisk-demo-") as tmp:
        work = Path(tmp)
        _say(f"demo: starting the embedded {kind} broker ...")
        with start_broker(kind, data_dir=work / "broker") as broker:
            _say(f"demo: broker ready at {broker.bootstrap} ({time.monotonic() - t0:.1f} s)")
            worker, web_port, log_path = start_worker(broker.bootstrap, work)
            try:
                _say(f"demo: worker started (pid {worker.pid}, HTTP on 127.0.0.1:{web_port}); warming up ...")
                result = asyncio.run(run_loadtest(broker.bootstrap, **traffic_options(args)))
                _say(f"demo: worker answered after {result.warmup_s:.1f} s of warm-up")
                if worker.poll() is not None:
                    _say(f"demo: the worker died:\n{log_tail(log_path)}")
                    return 1
                print(result.summary(), flush=True)
                if not result.watch.decisions:
                    _say(f"demo: no decisions were made; worker log:\n{log_tail(log_path)}")
                    return 1
                return 0
            except TimeoutError as exc:
                _say(f"demo: {exc}\nworker log:\n{log_tail(log_path)}")
                return 1
            finally:
                terminate(worker, grace=10)
                _say(f"demo: stopped worker and broker ({time.monotonic() - t0:.1f} s in all)")
