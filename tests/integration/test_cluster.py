"""A replicated cluster: three Apache Kafka brokers (KRaft, each a broker and a controller voter) from
`streamrisk broker --kafka --brokers 3`, started once for the module (Kafka phase only: Tansu runs no
cluster).

    cluster up ── 3 workers (docker-compose.yml's topology) ── /ready ── compose_smoke: every payment decided
              ── 2 workers, traffic ── SIGKILL the leader ── fenced, leaders move ── checks ── node in sync

- Three workers on the cluster, as docker-compose.yml runs them: each /ready, every topic with 3 replicas
  and min.insync.replicas 2 (internal ones too), and scripts/compose_smoke.py passes against them.
- The node leading most partitions under traffic is SIGKILLed: nothing lost, a read_committed reader sees
  one decision per payment, features and credit balances equal a brute-force recomputation, the two
  workers ride it out (none exits, /stats answers throughout), and the node comes back (the command
  restarts it once the controller has fenced it). The worst produce -> decision latency around the kill
  is the failover gap (docs/scale.md).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streamrisk.broker._protocol import ProtocolError, probe_metadata
from streamrisk.procs import LOOPBACK, log_tail, spawn, terminate
from tests.chaos import ChaosPlan, ChaosRun
from tests.harness import WorkerProcess, get_json, unique, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
NODES = 3
_BOOTSTRAP_LINE = re.compile(r"^(127\.0\.0\.1:\d+(?:,127\.0\.0\.1:\d+)*)$", re.MULTILINE)
_NODE_PID = re.compile(r"node (\d+) (?:restarted )?\(pid (\d+)\)")


class CliCluster:
    """`streamrisk broker --kafka --brokers 3` in a child process, as a user runs it."""

    def __init__(self, work: Path) -> None:
        self.log_path = work / "broker.log"
        argv = [sys.executable, "-m", "streamrisk", "broker", "--kafka", "--brokers", str(NODES),
                "--port", "0", "--data-dir", str(work / "data")]
        started = time.monotonic()
        self.proc = spawn(argv, log_path=self.log_path)
        while not (found := _BOOTSTRAP_LINE.search(self.log())):
            if self.proc.poll() is not None or time.monotonic() - started > 240:
                terminate(self.proc, 30)
                raise AssertionError(f"`streamrisk broker --brokers {NODES}` did not start:\n{self.log()}")
            time.sleep(0.1)
        self.startup_s = time.monotonic() - started
        self.bootstrap = found.group(1)
        self.ports = [int(a.rsplit(":", 1)[1]) for a in self.bootstrap.split(",")]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def pid(self, node_id: int) -> int:
        """The node's current pid, as the command last said it (it changes when a node is restarted)."""
        pids = {int(n): int(p) for n, p in _NODE_PID.findall(self.log())}
        return pids[node_id]

    def listed(self) -> set[int]:
        """Node ids the live nodes list (registered, not fenced)."""
        for port in self.ports:
            try:
                return {b.node_id for b in probe_metadata(LOOPBACK, port, timeout=1.0)}
            except (OSError, ProtocolError):
                continue
        return set()

    def wait_all_listed(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.listed() != set(range(1, NODES + 1)):
            assert time.monotonic() < deadline, f"listed: {self.listed()}\n{log_tail(self.log_path, 30)}"
            time.sleep(0.5)

    def stop(self) -> None:
        terminate(self.proc, 60)


async def describe(bootstrap: str, topics: list[str]) -> dict[str, list[dict]]:
    """Topic -> its partitions (partition, leader, replicas, isr) as the cluster describes them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {t["topic"]: t["partitions"] for t in await admin.describe_topics(topics)}
    finally:
        await admin.close()


async def min_insync(bootstrap: str, topics: list[str]) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
        return {topic: value for resp in found for *_, topic, configs in resp.resources
                for name, value, *_ in configs if name == "min.insync.replicas"}
    finally:
        await admin.close()


class LeaderKill:
    """The chaos run's broker kill on a cluster: SIGKILL the node leading most partitions of the topics
    under traffic; "back" (restart()) once the cluster has failed over: the node fenced and every one of
    those partitions led by a live node. The command restarts the node itself, meanwhile."""

    def __init__(self, cluster: CliCluster) -> None:
        self.cluster = cluster
        self.topics: list[str] = []
        self.node = 0
        self.led: list[str] = []

    @property
    def bootstrap(self) -> str:
        return self.cluster.bootstrap

    def victim(self) -> str:
        parts = asyncio.run(describe(self.bootstrap, self.topics))
        leaders = Counter(p["leader"] for ps in parts.values() for p in ps)
        self.node = leaders.most_common(1)[0][0]
        self.led = sorted(f"{t}[{p['partition']}]" for t, ps in parts.items() for p in ps
                          if p["leader"] == self.node)
        return f"node {self.node} (pid {self.cluster.pid(self.node)}), leader of {len(self.led)} partitions"

    def kill(self) -> None:
        os.killpg(self.cluster.pid(self.node), signal.SIGKILL)

    def restart(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            if self.node not in self.cluster.listed():
                parts = asyncio.run(describe(self.bootstrap, self.topics))
                leaders = {p["leader"] for ps in parts.values() for p in ps}
                if self.node not in leaders and -1 not in leaders:
                    return
            assert time.monotonic() < deadline, f"no failover from {self.node}:\n{self.cluster.log()[-3000:]}"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster(broker_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliCluster]:
    if broker_kind != "kafka":
        pytest.skip("Tansu runs a single broker: the cluster tests run in the Kafka phase")
    c = CliCluster(tmp_path_factory.mktemp("cluster"))
    print(f"3-broker cluster ready in {c.startup_s:.1f} s (from the command's start)")
    yield c
    c.stop()


async def test_three_brokers_and_three_workers_as_composed_decide_every_payment(
    cluster: CliCluster, tmp_path: Path
) -> None:
    prefix, app_id = unique("compose") + ".", unique("app")
    auth = {"STREAMRISK_API_TOKEN": "cluster-token", "STREAMRISK_PEER_TOKEN": "cluster-peer"}
    workers = [WorkerProcess(cluster.bootstrap, prefix, app_id, tmp_path / f"w{i}",
                             STREAMRISK_GROUP_INSTANCE_ID=f"worker-{i}", **auth).start() for i in range(1, 4)]
    try:
        smoke = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "scripts" / "compose_smoke.py"), "--bootstrap", cluster.bootstrap,
            *(a for w in workers for a in ("--worker", w.url(""))), "--token", auth["STREAMRISK_API_TOKEN"],
            "--topic-prefix", prefix, "--payments", "300", "--ready-timeout", "120", "--timeout", "60",
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        out = (await smoke.communicate())[0].decode()
        print(out)
        assert smoke.returncode == 0 and "smoke: OK" in out, out + "\n".join(w.log() for w in workers)

        async with aiohttp.ClientSession(headers={"Authorization": "Bearer cluster-token"}) as http:

            async def shared() -> object:
                stats = [await get_json(http, w, "/stats") for w in workers]
                owned = [s["assigned_partitions"] for s in stats if s is not None]
                return (sorted(p for ps in owned for p in ps) == [0, 1, 2, 3] and len(owned) == 3) or owned

            await wait_for(shared, 30, "the three workers sharing the four partitions")
        for w in workers:
            assert w.proc.poll() is None, w.log()

        topics = [prefix + t for t in ("payments", "risk-decisions", "dead-letters", "risk-rules")]
        topics.append(f"{prefix}{app_id}-state-changelog")
        parts = await describe(cluster.bootstrap, [*topics, "__consumer_offsets", "__transaction_state"])
        replicas = {t: {len(p["replicas"]) for p in ps} for t, ps in parts.items()}
        assert all(r == {NODES} for r in replicas.values()), replicas
        assert set((await min_insync(cluster.bootstrap, topics)).values()) == {"2"}
    finally:
        for w in workers:
            w.stop()


async def test_the_leader_killed_under_traffic_loses_nothing_decides_once_and_stops_no_worker(
    cluster: CliCluster, tmp_path: Path
) -> None:
    killer = LeaderKill(cluster)
    exactly_once = os.environ.get("STREAMRISK_PROCESSING_GUARANTEE", "auto") != "at_least_once"
    plan = ChaosPlan(duration_s=20, rate=100, kills=0, broker_kills=1, users=100, merchants=10, drain_s=60,
                     restart_after_s=0.0, say=print, static_members=True, exactly_once=exactly_once,
                     warm_up=True)
    run = ChaosRun(cluster.bootstrap, tmp_path, plan, killer, STREAMRISK_SESSION_TIMEOUT_S="6")
    killer.topics = [run.prefix + t for t in ("payments", "risk-decisions", "orders")]
    result = await run.run()
    print(result.report())
    print(f"killed node {killer.node}, leader of {killer.led}")
    assert not result.failures(), "\n".join(["checks failed:", *result.failures(), result.report()])
    assert f"node {killer.node} restarted" in cluster.log(), cluster.log()[-3000:]

    async def back_in_sync() -> object:  # the restarted node has caught up on every partition
        parts = await describe(cluster.bootstrap, killer.topics)
        short = {f"{t}[{p['partition']}]": p["isr"] for t, ps in parts.items() for p in ps
                 if len(p["isr"]) < NODES}
        return short or True

    await wait_for(back_in_sync, 90, f"node {killer.node} back in every partition's ISR")
