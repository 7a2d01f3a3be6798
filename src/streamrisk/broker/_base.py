"""What the embedded brokers share: the broker handle (readiness, stop), port checks, temp folders."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from streamrisk.broker._protocol import ProtocolError, probe_metadata
from streamrisk.procs import LOOPBACK, log_tail, terminate

_ADDR_IN_USE = re.compile(r"address (already )?in use|AddrInUse", re.IGNORECASE)


class BrokerError(RuntimeError):
    """The embedded broker could not be started (or died); the message holds its log tail."""


class PortInUseError(BrokerError):
    """The requested loopback port is taken by another process."""


# --------------------------------------------------------------------------- ports


def ensure_port_free(port: int) -> None:
    """Raise BrokerError if something already listens on 127.0.0.1:port.

    Needed because a Kafka probe against an occupied port would happily succeed against
    the *other* broker, and Tansu exits with status 0 on a bind failure.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the brokers set, so TIME_WAIT leftovers do not count as a clash.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            raise PortInUseError(f"port {LOOPBACK}:{port} is already in use ({exc.strerror})") from exc


# --------------------------------------------------------------------------- temp dirs

_TEMP_PREFIX = "streamrisk-"
_OWNER_FILE = "owner"


def _process_identity(pid: int) -> str | None:
    """ "pid starttime" for a live process (start time defeats pid reuse), else None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] in ("Z", "X"):
        return None
    return f"{pid} {fields[19]}"  # field 22 of stat: start time in clock ticks


def make_temp_workdir(kind: str) -> Path:
    """Create a private temp dir for a broker, first removing ones whose owner has died.

    A SIGKILLed owner never runs its cleanup; its broker died with it (PDEATHSIG), so the
    directory is garbage the next start can collect.
    """
    tmp_root = Path(tempfile.gettempdir())
    for stale in tmp_root.glob(f"{_TEMP_PREFIX}*-*"):
        try:
            owner = (stale / _OWNER_FILE).read_text().strip()
            pid = int(owner.split()[0])
        except (OSError, ValueError, IndexError):
            continue  # not ours, or still being set up
        if _process_identity(pid) != owner:
            shutil.rmtree(stale, ignore_errors=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{kind}-"))
    (workdir / _OWNER_FILE).write_text(_process_identity(os.getpid()) or str(os.getpid()))
    return workdir


# --------------------------------------------------------------------------- broker handle

_live: set[EmbeddedBroker] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_all() -> None:
    with _live_lock:
        brokers = list(_live)
    for broker in brokers:
        # A forked child inherits this registry; only the process that started a broker owns it.
        if broker._owner_pid == os.getpid():
            broker.stop()


# What each embedded broker can do beyond produce, fetch and consumer groups; tests that need more ask
# `EmbeddedBroker.supports` rather than which broker runs.
FEATURES: dict[str, frozenset[str]] = {
    # durable_log: a broker killed and restarted on its data directory has every record it acknowledged.
    "kafka": frozenset({"transactions", "delete_records", "static_membership", "durable_log"}),
    # No transactions through aiokafka or librdkafka, no DeleteRecords, no durable log (the embedded
    # binary stores in memory only: a restarted Tansu starts empty). Static members
    # (group.instance.id): Tansu 0.6 never expels one whose session has lapsed (it checks sessions
    # only on requests from dynamic members) and holds each of their joins and syncs for 3 s.
    "tansu": frozenset(),
}

# Worker settings (environment variables, settings.py) that each embedded broker needs beyond the
# defaults. Tansu does not wake a fetch parked at the broker when records arrive: it answers only at
# the fetch's max wait, so a worker there asks every 10 ms (the default, 100 ms, suits brokers that
# answer as soon as a record arrives, as Apache Kafka does, and spares an idle worker 100 fetches a
# second: an idle worker took 9-13 % of a core at 10 ms, 2 % at 100 ms).
WORKER_ENV: dict[str, dict[str, str]] = {"tansu": {"STREAMRISK_FETCH_MAX_WAIT_MS": "10"}}


def worker_env_for(bootstrap: str) -> dict[str, str]:
    """The worker settings for the embedded broker of this process at `bootstrap` (see WORKER_ENV);
    none for any other broker, which the defaults suit."""
    with _live_lock:
        for broker in _live:
            if broker.bootstrap == bootstrap:
                return broker.worker_env()
    return {}


# The shortest consumer-group session timeout to give workers on each broker, in seconds. Apache Kafka
# refuses less than its group.min.session.timeout.ms (6 s by default). Tansu has no minimum; at 3 s
# (0.5 s heartbeats) calm runs expelled no live worker, and a killed worker's partitions, which Tansu
# keeps assigning to it until its session lapses, move sooner (scripts/chaos.py; docs/benchmarks.md).
SHORTEST_SESSION_TIMEOUT_S: dict[str, float] = {"kafka": 6.0, "tansu": 3.0}


class EmbeddedBroker:
    """A broker child process listening on 127.0.0.1; stop() (or `with`) ends it for good."""

    bootstrap: str
    kind: str

    def __init__(
        self,
        kind: str,
        proc: subprocess.Popen[bytes],
        port: int,
        *,
        log_path: Path,
        data_dir: Path,
        cleanup_dir: Path | None = None,
        stop_grace: float = 15.0,
        controller_port: int | None = None,
    ) -> None:
        self.kind = kind
        self.port = port
        self.controller_port = controller_port
        self.bootstrap = f"{LOOPBACK}:{port}"
        self.log_path = log_path
        self.data_dir = data_dir
        self._proc = proc
        self._cleanup_dir = cleanup_dir
        self._stop_grace = stop_grace
        self._stopped = False
        self._owner_pid = os.getpid()
        self._lock = threading.Lock()
        with _live_lock:
            _live.add(self)

    def supports(self, feature: str) -> bool:
        """Whether this broker has `feature` (see FEATURES)."""
        return feature in FEATURES.get(self.kind, frozenset())

    def worker_env(self) -> dict[str, str]:
        """Environment variables a worker on this broker needs beyond the defaults (WORKER_ENV)."""
        return dict(WORKER_ENV.get(self.kind, {}))

    @property
    def shortest_session_timeout_s(self) -> float:
        """The shortest consumer-group session timeout to give workers here (SHORTEST_SESSION_TIMEOUT_S)."""
        return SHORTEST_SESSION_TIMEOUT_S.get(self.kind, 10.0)

    @property
    def pid(self) -> int:
        """OS process id of the broker (also its process-group id)."""
        return self._proc.pid

    def poll(self) -> int | None:
        """Exit status if the broker process has ended, else None."""
        return self._proc.poll()

    def is_running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker's log (empty once a temporary data dir is removed)."""
        return log_tail(self.log_path, lines)

    def stop(self, grace: float | None = None) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after `grace` s) and reap it. Idempotent."""
        with self._lock:
            if self._stopped or self._owner_pid != os.getpid():
                return
            self._stopped = True
            try:
                terminate(self._proc, self._stop_grace if grace is None else grace)
            finally:
                with _live_lock:
                    _live.discard(self)
                if self._cleanup_dir is not None:
                    shutil.rmtree(self._cleanup_dir, ignore_errors=True)

    def wait_ready(self, timeout: float, interval: float = 0.05) -> None:
        """Block until the broker answers a Metadata request advertising our port.

        On failure the broker is stopped and BrokerError (with the log tail) is raised.
        """
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        try:
            while True:
                code = self._proc.poll()
                if code is not None:
                    message = self._failure(f"exited with status {code} before becoming ready")
                    clash = _ADDR_IN_USE.search(self.log_tail())
                    raise (PortInUseError if clash else BrokerError)(message)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    detail = f" (last probe error: {last_error})" if last_error else ""
                    raise BrokerError(self._failure(f"not ready after {timeout:g}s{detail}"))
                try:
                    brokers = probe_metadata(LOOPBACK, self.port, timeout=min(2.0, remaining))
                except (OSError, ProtocolError) as exc:
                    last_error = exc
                else:
                    if any(b.port == self.port for b in brokers) and self._proc.poll() is None:
                        return
                    last_error = ProtocolError(f"metadata lists {brokers}, not our port")
                time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        except BaseException:
            # Also on KeyboardInterrupt: never leave a half-started broker behind.
            self.stop(grace=2.0)
            raise

    def _failure(self, what: str) -> str:
        tail = self.log_tail()
        shown = f"\n--- last lines of {self.log_path} ---\n{tail}" if tail else " (log is empty)"
        return f"{self.kind} broker on {self.bootstrap} {what}{shown}"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else f"pid={self.pid}"
        return f"<EmbeddedBroker {self.kind} {self.bootstrap} {state}>"
