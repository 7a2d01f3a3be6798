"""Broker lifecycle: readiness, stop, no orphans, clear errors, the `run_broker` CLI body."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamrisk.broker import BrokerError, PortInUseError, start_broker
from streamrisk.broker._base import make_temp_workdir
from streamrisk.broker._protocol import probe_metadata
from streamrisk.procs import spawn, terminate

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _gone(pid: int) -> bool:
    """True once `pid` no longer runs (an unreaped zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def _wait_gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


def _refuses(port: int, within: float = 5.0) -> bool:
    """True once nothing accepts connections on the port (a dying process may lag a bit)."""
    deadline = time.monotonic() + within
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


@pytest.fixture
def listening_socket() -> Iterator[int]:
    """A plain TCP listener occupying a loopback port; yields the port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _fake_binary(tmp_path: Path, body: str) -> str:
    script = tmp_path / "fake-broker"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(0o755)
    return str(script)


def _child_python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# ---------------------------------------------------------------- lifecycle


def test_start_answers_metadata_and_stop_leaves_nothing(broker_kind: str) -> None:
    broker = start_broker(broker_kind)
    assert broker.kind == broker_kind
    assert re.fullmatch(r"127\.0\.0\.1:\d+", broker.bootstrap)
    assert probe_metadata("127.0.0.1", broker.port)[0].port == broker.port
    data_dir, pid = broker.data_dir, broker.pid

    broker.stop()
    assert _gone(pid)
    assert not broker.is_running()
    assert _refuses(broker.port)
    assert not data_dir.exists(), "a temporary data dir must be removed by stop()"
    broker.stop()  # idempotent


def test_context_manager_and_explicit_port_and_data_dir(broker_kind: str, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with start_broker(broker_kind, port, data_dir=tmp_path) as broker:
        assert broker.bootstrap == f"127.0.0.1:{port}"
        pid = broker.pid
    assert _gone(pid)
    assert (tmp_path / f"{broker_kind}.log").is_file(), "a caller's data dir keeps the log"


def test_broker_dies_with_parent_killed_by_sigkill(broker_kind: str) -> None:
    child = _child_python(
        """
        import sys, time
        from streamrisk.broker import start_broker
        broker = start_broker(sys.argv[1])
        print(broker.pid, broker.port, broker.data_dir, flush=True)
        time.sleep(600)
        """,
        broker_kind,
    )
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert line, f"child failed to start a broker: {child.stderr.read() if child.stderr else ''}"
        pid_text, port_text, data_dir = line.split()
        broker_pid, port = int(pid_text), int(port_text)
        assert not _gone(broker_pid)
        child.send_signal(signal.SIGKILL)  # no atexit, no finally: only PDEATHSIG can help
        child.wait(10)
        assert _wait_gone(broker_pid, 5.0), f"broker pid {broker_pid} outlived its parent"
        assert _refuses(port)
        # Its temp dir could not be cleaned by the killed owner; the next start collects it.
        assert Path(data_dir).is_dir()
        shutil.rmtree(make_temp_workdir(broker_kind))
        assert not Path(data_dir).exists()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_broker_survives_exit_of_the_thread_that_started_it(broker_kind: str) -> None:
    # PDEATHSIG is per *thread*; start_broker must not tie the broker to a worker thread.
    started: list = []
    worker = threading.Thread(target=lambda: started.append(start_broker(broker_kind)))
    worker.start()
    worker.join(120)
    assert started, "start_broker failed in the worker thread"
    broker = started[0]
    try:
        time.sleep(0.3)
        assert broker.is_running()
        assert probe_metadata("127.0.0.1", broker.port)
    finally:
        broker.stop()
    assert _gone(broker.pid)


def test_terminate_escalates_to_sigkill_for_the_whole_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    # The shell and its background child both ignore SIGTERM (SIG_IGN survives exec).
    proc = spawn(
        ["sh", "-c", f"trap '' TERM; sleep 60 & echo $! > {pidfile}; wait"],
        log_path=tmp_path / "log",
    )
    deadline = time.monotonic() + 5
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    grandchild = int(pidfile.read_text())
    began = time.monotonic()
    terminate(proc, grace=0.3)
    assert time.monotonic() - began < 5
    assert proc.returncode == -signal.SIGKILL
    assert _wait_gone(grandchild, 5.0)


# ---------------------------------------------------------------- errors


def test_port_clash_is_reported(broker_kind: str, listening_socket: int) -> None:
    with pytest.raises(PortInUseError, match=rf"127\.0\.0\.1:{listening_socket}.*in use"):
        start_broker(broker_kind, listening_socket)


def test_port_of_a_running_broker_is_not_mistaken_for_ours(broker_kind: str, session_broker) -> None:
    # The probe would get a perfectly good Metadata reply from the *other* broker.
    with pytest.raises(PortInUseError):
        start_broker(broker_kind, session_broker.port)


def test_dead_broker_gives_log_tail(
    broker_kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if broker_kind == "tansu":
        monkeypatch.setenv("CALF_TANSU_BIN", _fake_binary(tmp_path, "echo boom-123 >&2; exit 3"))
        expected = r"exited with status 3(.|\n)*boom-123"
    else:
        monkeypatch.setenv("STREAMRISK_KAFKA_JVM_OPTS", "-XX:+StreamRiskNoSuchOption")
        expected = r"format failed(.|\n)*StreamRiskNoSuchOption"
    with pytest.raises(BrokerError, match=expected):
        start_broker(broker_kind)


def test_ready_timeout_kills_the_silent_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pidfile = tmp_path / "pid"
    monkeypatch.setenv("CALF_TANSU_BIN", _fake_binary(tmp_path, f"echo $$ > {pidfile}; exec sleep 60"))
    began = time.monotonic()
    with pytest.raises(BrokerError, match=r"not ready after 0\.5s"):
        start_broker("tansu", ready_timeout=0.5)
    assert time.monotonic() - began < 5
    assert _gone(int(pidfile.read_text()))


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown broker kind"):
        start_broker("redpanda")


# ---------------------------------------------------------------- run_broker (CLI body)

RUN = """
import sys
from streamrisk.broker import run_broker
raise SystemExit(run_broker(int(sys.argv[1]), sys.argv[2]))
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_run_broker_prints_bootstrap_and_stops_on_signal(broker_kind: str, sig: int) -> None:
    child = _child_python(RUN, "0", broker_kind)
    try:
        line = child.stdout.readline() if child.stdout else ""
        assert re.fullmatch(r"127\.0\.0\.1:\d+\n", line), (line, child.stderr and child.stderr.read())
        port = int(line.strip().rsplit(":", 1)[1])
        assert probe_metadata("127.0.0.1", port)
        match = re.search(r"pid (\d+)", child.stderr.readline() if child.stderr else "")
        assert match, "run_broker should report the broker pid on stderr"
        child.send_signal(sig)
        out, _ = child.communicate(timeout=30)
        assert child.returncode == 0
        assert out == "", "only the bootstrap line may go to stdout"
        assert _wait_gone(int(match.group(1)), 5.0)
        assert _refuses(port)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_run_broker_reports_port_clash(broker_kind: str, listening_socket: int) -> None:
    child = _child_python(RUN, str(listening_socket), broker_kind)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 1
    assert out == ""
    assert f"127.0.0.1:{listening_socket}" in err and "in use" in err


def test_environment_is_not_leaking_into_tansu(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tansu would pick these up from the environment and listen/store elsewhere.
    monkeypatch.setenv("STORAGE_ENGINE", "postgres://nowhere")
    monkeypatch.setenv("LISTENER_URL", "tcp://0.0.0.0:1")
    with start_broker("tansu") as broker:
        assert probe_metadata("127.0.0.1", broker.port)
    assert os.environ["STORAGE_ENGINE"] == "postgres://nowhere"


def _pids_with_marker(marker: str, also: str = "") -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                if marker.encode() in cmdline and also.encode() in cmdline and not _gone(int(entry.name)):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("stage", ["kafka.tools.StorageTool", "kafka.Kafka"])
def test_run_broker_interrupted_while_kafka_starts(
    broker_kind: str, stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if broker_kind != "kafka":
        pytest.skip("Tansu is ready too quickly to interrupt its start reliably")
    marker = f"-Dstreamrisk.test={os.getpid()}-{time.monotonic_ns()}"
    monkeypatch.setenv("STREAMRISK_KAFKA_JVM_OPTS", f"-Xmx512m -XX:+UseSerialGC {marker}")
    child = _child_python(RUN, "0", "kafka")
    try:
        deadline = time.monotonic() + 30
        while not _pids_with_marker(marker, stage):  # that JVM is running now
            assert child.poll() is None, child.communicate()[1]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
        assert child.returncode == 130, err
        assert out == ""
        deadline = time.monotonic() + 5
        while _pids_with_marker(marker):
            assert time.monotonic() < deadline, "a JVM outlived the interrupted start"
            time.sleep(0.05)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_workers_on_an_embedded_broker_get_the_settings_it_needs(session_broker, tmp_path: Path) -> None:
    from streamrisk.broker import worker_env_for
    from tests.harness import WorkerProcess

    needs = session_broker.worker_env()
    assert worker_env_for(session_broker.bootstrap) == needs
    assert worker_env_for("127.0.0.1:1") == {}  # not ours: the defaults suit it
    worker = WorkerProcess(session_broker.bootstrap, "p.", "app", tmp_path)  # not started
    assert {k: worker.env[k] for k in needs} == needs


def test_kafka_restarted_after_a_crash_is_registered_at_once_never_fenced_under_load(
    broker_kind: str, tmp_path: Path
) -> None:
    if broker_kind != "kafka":
        pytest.skip("Apache Kafka's restart; the embedded Tansu keeps its log in memory")
    # A crashed node restarted on its data dir used to lead its partitions from the old metadata
    # until the controller fenced its dead incarnation, ~9 s in; transaction markers in flight then
    # were dropped and left transactions that block read_committed readers for good (kafka.py).
    crashed = start_broker("kafka", data_dir=tmp_path)
    os.killpg(crashed.pid, signal.SIGKILL)
    crashed.stop()  # reaps it
    log = tmp_path / "kafka.log"
    before = log.stat().st_size  # the log is appended to: read the restart's lines only
    with start_broker("kafka", crashed.port, data_dir=tmp_path) as broker:
        deadline = time.monotonic() + 30
        while "Successfully registered broker 1" not in (restart := log.read_bytes()[before:].decode()):
            assert time.monotonic() < deadline, "the restarted broker never registered"
            time.sleep(0.1)
        assert "DUPLICATE_BROKER_REGISTRATION" not in restart, "it ran on the old incarnation's metadata"
        assert broker.is_running()
    assert "Fencing broker 1 " in (tmp_path / "kafka-fence.log").read_text(), "fenced before it started"
