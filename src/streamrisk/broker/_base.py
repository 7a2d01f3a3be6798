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
from collections.abc import Callable
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


class _Broker:
    """What a broker and a cluster share: what their kind supports and needs, and `with` (stopped when
    the block ends, however it ends)."""

    kind: str

    def stop(self) -> None:
        raise NotImplementedError

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

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedBroker(_Broker):
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

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else f"pid={self.pid}"
        return f"<EmbeddedBroker {self.kind} {self.bootstrap} {state}>"


# --------------------------------------------------------------------------- cluster handle


class BrokerCluster(_Broker):
    """Several broker nodes on loopback forming one cluster; stop() (or `with`) ends them all.

    A node that dies (a crash, a SIGKILL) is started again by tend(), but only once the live nodes no
    longer list it, i.e. once the controller has fenced its dead incarnation: a new incarnation started
    before that would be refused registration until the old session lapsed, meanwhile leading its
    partitions from stale metadata (see kafka._fence_crashed_incarnation for the one-node case).
    """

    def __init__(
        self,
        kind: str,
        nodes: dict[int, EmbeddedBroker],
        relaunch: Callable[[int], EmbeddedBroker],
        *,
        data_dir: Path,
        cleanup_dir: Path | None,
        fence_timeout_s: float,
    ) -> None:
        self.kind = kind
        self._nodes = dict(nodes)
        self._relaunch = relaunch
        self.data_dir = data_dir
        self._cleanup_dir = cleanup_dir
        self._fence_timeout_s = fence_timeout_s
        self._died_at: dict[int, float] = {}
        self._owner_pid = os.getpid()
        self.bootstrap = ",".join(self._nodes[n].bootstrap for n in sorted(self._nodes))

    @property
    def node_ids(self) -> list[int]:
        return sorted(self._nodes)

    def node(self, node_id: int) -> EmbeddedBroker:
        """The node's current process handle (a new one after each restart)."""
        return self._nodes[node_id]

    def node_of(self, port: int) -> int:
        """The id of the node whose client port is `port`."""
        return next(n for n, b in self._nodes.items() if b.port == port)

    @property
    def pid(self) -> int:
        return self._nodes[self.node_ids[0]].pid

    @property
    def log_path(self) -> Path:
        return self._nodes[self.node_ids[0]].log_path

    def poll(self) -> int | None:
        """None while any node runs (or is being restarted); else the exit status of the last one."""
        codes = [b.poll() for b in self._nodes.values()]
        if any(code is None for code in codes):
            return None
        return next((code for code in codes if code), 0)

    def is_running(self) -> bool:
        return self.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(f"--- node {n} ({b.log_path})\n{b.log_tail(lines)}"
                         for n, b in sorted(self._nodes.items()))

    def listed(self, timeout: float = 1.0) -> set[int] | None:
        """Node ids a live node lists in its metadata (the registered, unfenced brokers), or None
        when no node answers."""
        for b in self._nodes.values():
            if b.poll() is not None:
                continue
            try:
                return {info.node_id for info in probe_metadata(LOOPBACK, b.port, timeout=timeout)}
            except (OSError, ProtocolError):
                continue
        return None

    def wait_listed(self, timeout: float) -> None:
        """Block until a node lists every node of the cluster (all registered and unfenced)."""
        deadline = time.monotonic() + timeout
        while True:
            listed = self.listed()
            if listed is not None and listed >= set(self._nodes):
                return
            if time.monotonic() > deadline:
                raise BrokerError(f"the cluster lists {sorted(listed or ())} of nodes {self.node_ids} after "
                                  f"{timeout:g} s\n{self.log_tail()}")
            time.sleep(0.1)

    def tend(self) -> list[str]:
        """Restart each node that died, once the live ones no longer list it (fenced) or after the
        fence timeout; returns what it did, one line each. Call it every fraction of a second."""
        said: list[str] = []
        for node_id, b in sorted(self._nodes.items()):
            code = b.poll()
            if code is None:
                continue
            now = time.monotonic()
            if node_id not in self._died_at:
                self._died_at[node_id] = now
                said.append(f"node {node_id} (pid {b.pid}) exited with status {code}; restarting it once "
                            "the controller has fenced it")
            listed = self.listed()
            fenced = listed is not None and node_id not in listed
            if fenced or now - self._died_at[node_id] > self._fence_timeout_s:
                b.stop()
                self._nodes[node_id] = self._relaunch(node_id)
                del self._died_at[node_id]
                said.append(f"node {node_id} restarted (pid {self._nodes[node_id].pid}) on "
                            f"{self._nodes[node_id].bootstrap}")
        return said

    def stop(self, grace: float | None = None) -> None:
        """Stop every node at once (each SIGTERM, then SIGKILL after `grace` s). Idempotent."""
        if self._owner_pid != os.getpid():
            return
        threads = [threading.Thread(target=b.stop, args=(grace,)) for b in self._nodes.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self._cleanup_dir is not None:
            shutil.rmtree(self._cleanup_dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<BrokerCluster {self.kind} {self.bootstrap}>"
