"""Child processes that cannot outlive us: spawn, terminate, a free loopback port, a log's tail.

Used by the embedded brokers, the demo, the benchmarks and the test harness: a child gets its own process
group and PR_SET_PDEATHSIG, so Ctrl-C, an exception or even a SIGKILL of ours leaves no orphan.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path

LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def free_port() -> int:
    """Return a currently free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


_libc: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - exotic libc
        _libc = None

_spawn_queue: queue.SimpleQueue[tuple[Callable[[], subprocess.Popen[bytes]], Future]] | None = None
_spawn_lock = threading.Lock()


def _make_child_setup(parent_pid: int) -> Callable[[], None]:
    prctl = _libc.prctl if _libc is not None else None

    def child_setup() -> None:
        # Runs in the child between fork and exec: if our process dies, even by SIGKILL,
        # the kernel SIGKILLs the broker, so it can never outlive us.
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died before prctl took effect; then we were re-parented.
        if os.getppid() != parent_pid:
            os._exit(1)

    return child_setup


def _spawner_loop(jobs: queue.SimpleQueue) -> None:
    while True:
        launch, future = jobs.get()
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(launch())
            except BaseException as exc:
                future.set_exception(exc)


def _in_long_lived_thread(launch: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Run `launch` in a thread that lives as long as the process.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so forking from a
    short-lived worker thread (asyncio.to_thread, executors) would kill the broker early.
    """
    global _spawn_queue
    if threading.current_thread() is threading.main_thread():
        return launch()
    with _spawn_lock:
        if _spawn_queue is None:
            _spawn_queue = queue.SimpleQueue()
            threading.Thread(
                target=_spawner_loop, args=(_spawn_queue,), name="streamrisk-spawner", daemon=True
            ).start()
        jobs = _spawn_queue
    future: Future[subprocess.Popen[bytes]] = Future()
    jobs.put((launch, future))
    return future.result()


def spawn(
    argv: Sequence[str],
    *,
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session with output appended to `log_path`; dies with us."""
    parent_pid = os.getpid()

    def launch() -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                start_new_session=True,  # own process group: Ctrl-C in our terminal is ours
                preexec_fn=_make_child_setup(parent_pid),
                close_fds=True,
            )

    return _in_long_lived_thread(launch)


def terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM the child's process group, SIGKILL it after `grace` seconds, and reap it."""
    if proc.poll() is None:
        # Until we reap the leader its pid (and so the group id) cannot be reused.
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def log_tail(path: Path | None, lines: int = 40) -> str:
    """Last `lines` lines of a log file, colour codes removed; '' if unreadable."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(_ANSI.sub("", text).splitlines()[-lines:])
