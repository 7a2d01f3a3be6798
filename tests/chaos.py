"""A chaos run: steady traffic into a group of workers while workers are SIGKILLed and restarted, a
worker joins and one stops gracefully, and (optionally) the broker itself is SIGKILLed and restarted on
its port and data directory; then the checks every user of StreamRisk relies on.

Shared by the bounded test (tests/integration/test_chaos.py) and scripts/chaos.py (longer, figures).
Workers are black boxes: `streamrisk worker` processes, an outside producer, an outside consumer of
`risk-decisions`, their HTTP API, and the group's committed offsets.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from streamrisk.broker import EmbeddedBroker, start_broker
from streamrisk.core.events import to_minor
from streamrisk.loadgen.produce import make_producer
from streamrisk.loadgen.synthetic import Record, Traffic
from streamrisk.settings import INPUT_TOPICS
from tests.feature_oracle import FeatureOracle, compare
from tests.harness import WorkerProcess, committed_offsets, end_offsets, group_of, unique

PARTITIONS = 4
AROUND_KILL_S = (5.0, 30.0)  # payments sent this long before / after a kill are "around" it
# The outside producer's patience for one record: longer than a broker restart (a JVM start and log
# recovery on a loaded box), so a broker kill pauses the traffic instead of failing its records.
SEND_TIMEOUT_MS = 120_000
DRAWING = ("approve", "review")  # a credit_line payment decided so draws on the user's credit


@dataclass
class ChaosPlan:
    duration_s: float = 50.0  # of traffic
    rate: float = 150.0  # events/s, the default synthetic mix (~59 % payments)
    kills: int = 3
    restart_after_s: float = 2.0
    users: int = 300
    merchants: int = 30
    seed: int = 7
    stats_gap_s: float = 10.0  # longest a live worker may leave /stats unanswered
    startup_s: float = 90.0  # longest from spawn to a worker's first /stats answer
    drain_s: float = 120.0  # after traffic: every payment decided, offsets committed, features equal
    # Each worker a static group member (STREAMRISK_GROUP_INSTANCE_ID), restarted under its old id,
    # as a pod keeps its name. Only on brokers that support it (EmbeddedBroker.supports).
    static_members: bool = False
    # SIGKILLs of the broker (a KillableBroker given to ChaosRun: a RestartableBroker, or a cluster's
    # node leading the partitions, tests/integration/test_cluster.py), each restarted on its port and
    # data directory, spread between the worker faults.
    broker_kills: int = 0
    # The workers run exactly-once (Kafka transactions, the default where the broker has them): a
    # read_committed reader of risk-decisions must see exactly one decision per payment.
    exactly_once: bool = False
    # Before the traffic, one payment of a user outside it on each partition, decided: the workers are
    # deciding (not still starting) when the traffic and its faults begin. Its entities are not checked.
    warm_up: bool = False
    say: Callable[[str], None] = lambda _msg: None

    def faults(self) -> list[tuple[float, str]]:
        """(seconds into the traffic, "kill" | "join" | "stop" | "broker"), evenly spread, ending 5 s
        before the end: the kills, a third worker joining after the second kill, one stopping before the
        last kill, and the broker kills spread among them. No kills: no worker fault at all (a calm
        run, which counts the rebalances no fault caused), only the broker kills if any."""
        kinds = ["kill"] * self.kills
        if self.kills:
            kinds.insert(min(2, len(kinds)), "join")
            kinds.insert(len(kinds) - 1 if self.kills >= 3 else len(kinds), "stop")
        total = len(kinds) + self.broker_kills
        for j in range(self.broker_kills):  # in the middle of each of broker_kills equal stretches
            kinds.insert(min(len(kinds), int((j + 0.5) * total / self.broker_kills)), "broker")
        if not kinds:
            return []
        step = (self.duration_s - 5.0) / (len(kinds) + 1)
        return [(step * (i + 1), kind) for i, kind in enumerate(kinds)]


@dataclass
class Member:
    """One worker process of the group over its lifetime, as seen from outside."""

    name: str
    instance: str  # its group instance id, when the plan uses static members
    proc: WorkerProcess
    started: float
    ended: float | None = None
    how: str = ""  # "killed" / "stopped" once we ended it
    first_ok: float | None = None
    last_ok: float | None = None
    worst_gap: float = 0.0  # longest time between two /stats answers while alive
    partitions: list[int] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def alive(self) -> bool:
        return self.ended is None


@dataclass
class Kill:
    at: float  # wall clock, s
    victim: str
    partitions: list[int]
    recovery_s: float | None = math.inf  # None: no payment on its partitions was sent after it
    worst_latency_s: float = 0.0
    broker_down: bool = False  # the broker was down around it (see _result)


@dataclass
class BrokerKill:
    at: float  # wall clock, s
    down_s: float = math.inf  # from the SIGKILL to the restarted broker answering
    recovery_s: float = math.inf  # from the broker answering again to the next decision
    worst_latency_s: float = 0.0


def runs_exactly_once(broker: EmbeddedBroker) -> bool:
    """Whether workers on `broker` run exactly-once: STREAMRISK_PROCESSING_GUARANTEE (here, as the
    workers inherit it) exactly_once, or auto (the default) on a broker with transactions."""
    guarantee = os.environ.get("STREAMRISK_PROCESSING_GUARANTEE", "auto")
    return guarantee == "exactly_once" or (guarantee == "auto" and broker.supports("transactions"))


class KillableBroker(Protocol):
    """What a chaos run's broker kills need: the bootstrap, a SIGKILL, and a way back (restart())."""

    @property
    def bootstrap(self) -> str: ...

    def victim(self) -> str:
        """What kill() is about to SIGKILL, for the run's log."""
        ...

    def kill(self) -> None: ...

    def restart(self) -> None: ...


class RestartableBroker:
    """An embedded broker of its own that the chaos run SIGKILLs (its whole process group: no
    shutdown, the log as the crash left it) and restarts on the same port and data directory."""

    def __init__(self, kind: str, data_dir: Path) -> None:
        self.kind, self.data_dir = kind, data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.broker: EmbeddedBroker = start_broker(kind, data_dir=data_dir)
        self.port = int(self.broker.bootstrap.rsplit(":", 1)[1])

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def victim(self) -> str:
        return f"the broker (pid {self.broker.pid})"

    def kill(self) -> None:
        os.killpg(self.broker.pid, signal.SIGKILL)
        self.broker.stop()  # reaps it

    def restart(self) -> None:
        self.broker = start_broker(self.kind, self.port, data_dir=self.data_dir)

    def stop(self) -> None:
        self.broker.stop()

    def __enter__(self) -> RestartableBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class ChaosResult:
    checks: list[tuple[str, bool]]
    figures: dict[str, Any]
    kills: list[Kill]
    members: list[Member]
    broker_kills: list[BrokerKill] = field(default_factory=list)

    def failures(self) -> list[str]:
        return [label for label, ok in self.checks if not ok]

    def report(self) -> str:
        lines = [f"{k:<34} {v}" for k, v in self.figures.items()]
        for i, k in enumerate(self.kills, 1):
            rec = ("n/a (no payment on its partitions after it)" if k.recovery_s is None
                   else "never" if math.isinf(k.recovery_s) else f"{k.recovery_s:.1f} s")
            worst = "undecided" if math.isinf(k.worst_latency_s) else f"{k.worst_latency_s:.1f} s"
            lines.append(f"kill {i}: {k.victim} (partitions {k.partitions}): first decision on them "
                         f"after {rec}; worst produce->decision around it {worst}"
                         + (" (the broker was down around it)" if k.broker_down else ""))
        for i, b in enumerate(self.broker_kills, 1):
            down = "never back" if math.isinf(b.down_s) else f"{b.down_s:.1f} s"
            rec = "never" if math.isinf(b.recovery_s) else f"{b.recovery_s:.1f} s"
            worst = "undecided" if math.isinf(b.worst_latency_s) else f"{b.worst_latency_s:.1f} s"
            lines.append(f"broker kill {i}: down {down}; first decision {rec} after it answered again; "
                         f"worst produce->decision around it {worst}")
        for m in self.members:
            life = f"{(m.ended or time.time()) - m.started:.0f} s"
            lines.append(f"worker {m.name}: {m.how or 'running'} after {life}, longest /stats silence "
                         f"{m.worst_gap:.1f} s, last partitions {m.partitions}")
        return "\n".join(lines)


class ChaosRun:
    def __init__(self, bootstrap: str, work: Path, plan: ChaosPlan, broker: KillableBroker | None = None,
                 **worker_env: str) -> None:
        """`broker`: the broker at `bootstrap`, to kill and restart (plan.broker_kills needs one)."""
        if plan.broker_kills and broker is None:
            raise ValueError("broker kills need the RestartableBroker at the bootstrap address")
        self.bootstrap, self.work, self.plan, self.env = bootstrap, work, plan, worker_env
        self.broker = broker
        self.broker_kills: list[BrokerKill] = []
        self.prefix = unique("chaos") + "."
        self.app_id = unique("chaos-app")
        self.rng = random.Random(plan.seed)
        self.members: list[Member] = []
        self.kills: list[Kill] = []
        self.sent: dict[str, tuple[float, int]] = {}  # payment event_id -> (send time, partition)
        self.records: list[Record] = []
        self.ends: dict[TopicPartition, int] = {}  # input partition -> offset after our last record
        self.decisions: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        # The same as a read_committed reader sees them (exactly-once runs only).
        self.committed_decisions: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        self.send_errors = 0
        self.rebalances_before: dict[str, int] = {}  # worker -> its /stats rebalances when traffic began
        self._http: aiohttp.ClientSession | None = None
        self.outstanding: dict[str, float] = {}  # user -> credit_outstanding in its last GET /users/{id}

    # -- workers
    def _spawn(self, replaces: Member | None = None) -> Member:
        """A new worker; one that `replaces` a killed worker keeps its group instance id and web port."""
        name = f"w{len(self.members) + 1}"
        instance = replaces.instance if replaces else f"i{len({m.instance for m in self.members}) + 1}"
        env = {**self.env, "STREAMRISK_GROUP_INSTANCE_ID": instance} if self.plan.static_members else self.env
        port = replaces.proc.web_port if replaces and self.plan.static_members else None
        proc = WorkerProcess(self.bootstrap, self.prefix, self.app_id, self.work / name, port, **env).start()
        m = Member(name, instance, proc, time.time())
        self.members.append(m)
        as_ = f", as static member {instance}" if self.plan.static_members else ""
        self.plan.say(f"{name} started (pid {proc.proc.pid}, port {proc.web_port}{as_})")
        return m

    def live(self) -> list[Member]:
        """Workers we have not ended (some may have exited on their own: see running())."""
        return [m for m in self.members if m.alive()]

    def running(self) -> list[Member]:
        return [m for m in self.live() if m.proc.proc.poll() is None]

    async def _kill(self) -> None:
        m = self.rng.choice(self.running() or self.live())
        kill = Kill(time.time(), m.name, list(m.partitions))
        m.proc.kill()
        self._end(m, "killed")
        self.kills.append(kill)
        self.plan.say(f"SIGKILL {m.name} (partitions {kill.partitions})")
        await asyncio.sleep(self.plan.restart_after_s)
        self._spawn(replaces=m)

    async def _stop(self) -> None:
        m = self.rng.choice(self.running() or self.live())
        self.plan.say(f"SIGTERM {m.name}")
        self._end(m, "stopped")
        await asyncio.to_thread(m.proc.stop)

    def _end(self, m: Member, how: str) -> None:
        m.ended, m.how = time.time(), how
        if m.last_ok is not None:
            m.worst_gap = max(m.worst_gap, m.ended - m.last_ok)

    async def _poll_stats(self) -> None:
        """Ask every live worker for /stats every 0.5 s; record the longest silence of each."""
        assert self._http is not None
        while True:
            for m in self.live():
                try:
                    async with self._http.get(m.proc.url("/stats")) as resp:
                        body = await resp.json() if resp.status == 200 else None
                except (aiohttp.ClientError, TimeoutError):
                    body = None
                now = time.time()
                if body is None or not m.alive():
                    continue
                if m.last_ok is not None:
                    m.worst_gap = max(m.worst_gap, now - m.last_ok)
                m.first_ok = m.first_ok or now
                m.last_ok, m.stats = now, body
                m.partitions = body.get("assigned_partitions", [])
            await asyncio.sleep(0.5)

    # -- traffic and outputs
    async def _broker_kill(self) -> None:
        assert self.broker is not None
        victim = await asyncio.to_thread(self.broker.victim)
        bk = BrokerKill(time.time())
        self.broker_kills.append(bk)
        self.plan.say(f"SIGKILL {victim}")
        await asyncio.to_thread(self.broker.kill)
        await asyncio.sleep(self.plan.restart_after_s)
        await asyncio.to_thread(self.broker.restart)
        bk.down_s = time.time() - bk.at
        self.plan.say(f"broker back on {self.broker.bootstrap} after {bk.down_s:.1f} s")

    async def _read_decisions(self, committed: bool = False) -> None:
        """Every decision on risk-decisions with when it was read: as read_uncommitted (self.decisions)
        or, `committed`, as read_committed (self.committed_decisions)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, fetch_max_wait_ms=10,
                                    enable_auto_commit=False,
                                    isolation_level="read_committed" if committed else "read_uncommitted")
        seen = self.committed_decisions if committed else self.decisions
        await consumer.start()
        try:
            name = self.prefix + "risk-decisions"
            tps = [TopicPartition(name, p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while True:
                batch = await consumer.getmany(timeout_ms=100)
                now = time.time()
                for records in batch.values():
                    for r in records:
                        v = orjson.loads(r.value)
                        seen.setdefault(v["event_id"], []).append((now, v))
        finally:
            await consumer.stop()

    async def _producer(self) -> AIOKafkaProducer:
        """Patient: a broker restart pauses the sends, it does not fail them. Idempotent where the broker
        has it (not Tansu): a batch the broker wrote but did not acknowledge before it was killed is
        retried without a second copy. Elsewhere a second copy is a producer's duplicate (same event
        id), which the workers and the oracles ignore."""
        producer = make_producer(self.bootstrap, enable_idempotence=True, request_timeout_ms=SEND_TIMEOUT_MS)
        try:
            await producer.start()
            return producer
        except KafkaError as exc:
            await producer.stop()
            self.plan.say(f"no idempotent producer on this broker ({exc!r}): a plain one")
        producer = make_producer(self.bootstrap, request_timeout_ms=SEND_TIMEOUT_MS)
        await producer.start()
        return producer

    async def _traffic(self) -> None:
        plan = self.plan
        traffic = Traffic(users=plan.users, merchants=plan.merchants, seed=plan.seed, run_id=self.prefix)
        producer = await self._producer()
        tick, start, due = 0.02, time.monotonic(), 0.0
        try:
            while (elapsed := time.monotonic() - start) < plan.duration_s:
                sends = []
                while due <= elapsed * plan.rate:
                    due += 1
                    rec = traffic.next(int(time.time() * 1000))
                    assert isinstance(rec, Record)  # no malformed share in the default mix
                    sends.append((rec, time.time(), await producer.send(
                        self.prefix + rec.topic, orjson.dumps(rec.value), key=rec.key.encode())))
                for rec, at, fut in sends:
                    try:
                        meta = await fut
                    except Exception:  # a record the broker refused was never sent
                        self.send_errors += 1
                        continue
                    self.records.append(rec)
                    tp = TopicPartition(meta.topic, meta.partition)
                    self.ends[tp] = max(self.ends.get(tp, 0), meta.offset + 1)
                    if rec.topic == "payments":
                        self.sent[rec.value["event_id"]] = (at, meta.partition)
                await asyncio.sleep(max(0.0, tick - (time.monotonic() - start - elapsed)))
        finally:
            await producer.stop()

    async def _faults(self, t0: float) -> None:
        """The plan's faults in turn. One that took longer than the gap to the next (a broker restart,
        ~20 s for Apache Kafka on a loaded box) spreads the rest evenly over what is left of the
        traffic, instead of firing them at once."""
        faults = self.plan.faults()
        last = self.plan.duration_s - 5.0
        for i, (_, kind) in enumerate(faults):
            at = faults[i][0]
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            if kind == "kill":
                await self._kill()
            elif kind == "broker":
                await self._broker_kill()
            elif kind == "join":
                self._spawn()
            else:
                await self._stop()
            now, rest = time.monotonic() - t0, len(faults) - i - 1
            if rest and faults[i + 1][0] < now:
                step = max(self.plan.restart_after_s, (last - now) / (rest + 1))
                faults[i + 1:] = [(now + step * (j + 1), k) for j, (_, k) in enumerate(faults[i + 1:])]
                self.plan.say(f"behind the plan: the {rest} faults left re-spread {step:.1f} s apart")

    # -- the run
    async def run(self) -> ChaosResult:
        plan = self.plan
        timeout = aiohttp.ClientTimeout(total=3)
        async with aiohttp.ClientSession(timeout=timeout) as self._http:
            self._spawn()
            self._spawn()
            poller = asyncio.create_task(self._poll_stats())
            reader: asyncio.Task | None = None
            committed_reader: asyncio.Task | None = None
            try:
                await self._until(lambda: self._owned() == set(range(PARTITIONS)) or self._owned(),
                                  plan.startup_s, "two workers own every partition")
                reader = asyncio.create_task(self._read_decisions())
                if plan.exactly_once:
                    committed_reader = asyncio.create_task(self._read_decisions(committed=True))
                plan.say(f"traffic: {plan.rate:.0f} events/s for {plan.duration_s:.0f} s; "
                         f"faults at {plan.faults()}")
                if plan.warm_up:
                    await self._warm_up()
                self.rebalances_before = {m.name: m.stats.get("rebalances", 0) for m in self.members}
                t0 = time.monotonic()
                await asyncio.gather(self._traffic(), self._faults(t0))
                traffic_end = time.time()
                plan.say(f"traffic done: {len(self.records)} records, {len(self.sent)} payments; draining")
                drain = time.monotonic() + plan.drain_s
                await self._until(lambda: not self._undecided() or len(self._undecided()),
                                  drain - time.monotonic(), "every payment decided", fail=False)
                drained_s = time.time() - traffic_end
                await self._until(self._offsets_done, max(1.0, drain - time.monotonic()),
                                  "committed offsets at the end", fail=False)
                if plan.exactly_once:
                    await self._until(lambda: not self._uncommitted() or len(self._uncommitted()),
                                      max(1.0, drain - time.monotonic()),
                                      "every payment's decision committed", fail=False)
                oracle = FeatureOracle()
                oracle.add_all(self.records)
                await self._until(lambda: self._features_equal(oracle), max(1.0, drain - time.monotonic()),
                                  "features equal the oracle", fail=False)
                result = await self._result(oracle, drained_s)
            finally:
                tasks = [t for t in (reader, committed_reader, poller) if t is not None]
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                ending = self.live()
                for m in ending:
                    self._end(m, "stopped at the end")
                await asyncio.gather(*(asyncio.to_thread(m.proc.stop) for m in ending))
        return result

    async def _warm_up(self) -> None:
        """A payment of a user of its own on every partition (keys found by murmur2), each decided."""
        from streamrisk.core.partitioning import kafka_partition

        users: dict[int, str] = {}
        i = 0
        while len(users) < PARTITIONS:
            user = f"warm-up-{i}"
            users.setdefault(kafka_partition(user.encode(), PARTITIONS), user)
            i += 1
        producer = await self._producer()
        try:
            for user in users.values():
                value = {"event_id": f"{user}-p", "ts": int(time.time() * 1000), "user_id": user,
                         "merchant_id": "warm-up-merchant", "amount": 1.0, "currency": "CNY",
                         "method": "card"}
                await producer.send_and_wait(self.prefix + "payments", orjson.dumps(value), key=user.encode())
        finally:
            await producer.stop()
        started = time.monotonic()
        await self._until(lambda: all(f"{u}-p" in self.outputs for u in users.values()) or len(self.outputs),
                          self.plan.startup_s, "the warm-up payments decided")
        self.plan.say(f"warm-up: a payment on each partition decided in {time.monotonic() - started:.1f} s")

    async def _until(self, check: Callable[[], Any], timeout: float, what: str, fail: bool = True) -> Any:
        """Poll `check` (sync or async) until it returns True; return its last answer."""
        deadline = time.monotonic() + timeout
        while True:
            last = check()
            if asyncio.iscoroutine(last):
                last = await last
            if last is True:
                return True
            if time.monotonic() > deadline:
                if fail:
                    logs = "\n".join(f"--- {m.name}\n{m.proc.log()}" for m in self.members)
                    raise AssertionError(f"{what}: not reached in {timeout:.0f} s; last {last!r}\n{logs}")
                self.plan.say(f"{what}: not reached in {timeout:.0f} s; last {str(last)[:300]}")
                return last
            await asyncio.sleep(0.5)

    def _owned(self) -> set[int]:
        return {p for m in self.running() for p in m.partitions}

    def _undecided(self) -> list[str]:
        return [eid for eid in self.sent if eid not in self.decisions]

    @property
    def outputs(self) -> dict[str, list[tuple[float, dict[str, Any]]]]:
        """The decisions as the workers' guarantee presents them downstream: read_committed under
        exactly-once (a read_uncommitted reader also sees those of aborted transactions, made again
        after a kill, from a newer merchant summary), else read_uncommitted."""
        return self.committed_decisions if self.plan.exactly_once else self.decisions

    def _uncommitted(self) -> list[str]:
        """Payments without a decision a read_committed reader has seen."""
        return [eid for eid in self.sent if eid not in self.committed_decisions]

    async def _offsets_behind(self) -> dict[str, tuple[int, int]]:
        """Input partitions whose committed offset is not at the end: name -> (committed, end)."""
        ends = await end_offsets(self.bootstrap, [self.prefix + t for t in INPUT_TOPICS])
        for tp, end in self.ends.items():  # never below what we know we produced
            ends[tp] = max(ends.get(tp, 0), end)
        committed = await committed_offsets(self.bootstrap, group_of(self.prefix, self.app_id), ends)
        return {f"{tp.topic}-{tp.partition}": (committed.get(tp, 0), end)
                for tp, end in ends.items() if committed.get(tp, 0) != end}

    async def _offsets_done(self) -> bool | dict[str, tuple[int, int]]:
        return await self._offsets_behind() or True

    async def _features_diff(self, oracle: FeatureOracle) -> dict[str, Any]:
        """Entities whose features, from whichever live worker answers, differ from the oracle."""
        assert self._http is not None
        diffs: dict[str, Any] = {}
        for kind, ids, want in (("users", oracle.user_clock, oracle.user),
                                ("merchants", oracle.merchant_clock, oracle.merchant)):
            for entity in ids:
                got = None
                for m in self.running():
                    try:
                        async with self._http.get(m.proc.url(f"/{kind}/{entity}")) as resp:
                            if resp.status == 200:
                                body = await resp.json()
                                got = body["features"]
                                if kind == "users":
                                    self.outstanding[entity] = body["credit_outstanding"]
                                break
                    except (aiohttp.ClientError, TimeoutError):
                        continue
                diff = compare(want(entity), got)
                if diff:
                    diffs[f"{kind}/{entity}"] = diff
        return diffs

    async def _features_equal(self, oracle: FeatureOracle) -> bool | str:
        diffs = await self._features_diff(oracle)
        return not diffs or f"{len(diffs)} differ, e.g. {dict(list(diffs.items())[:2])}"

    def _credit_diff(self) -> tuple[int, int, dict[str, str]]:
        """(users checked exactly, users checked within bounds, users whose credit_outstanding on the
        workers' API is off): see credit_bounds."""
        first = {eid: got[0][1]["action"] for eid, got in self.outputs.items()}
        bounds = credit_bounds(self.records, first)
        off: dict[str, str] = {}
        for user, (low, high) in bounds.items():
            got = self.outstanding.get(user)
            if got is None:
                off[user] = "not answered"
            elif not low <= to_minor(got) <= high:
                want = f"{low / 100:.2f}" if low == high else f"in [{low / 100:.2f}, {high / 100:.2f}]"
                off[user] = f"{got:.2f}, want {want}"
        exact = sum(1 for low, high in bounds.values() if low == high)
        return exact, len(bounds) - exact, off

    # -- verdict
    async def _result(self, oracle: FeatureOracle, drained_s: float) -> ChaosResult:
        plan = self.plan
        undecided = self._undecided()
        outputs = self.outputs
        repeats, differing = repeat_differences({e: [v for _, v in got] for e, got in outputs.items()
                                                 if e in self.sent})
        disagree = len(differing)
        for k in self.kills:
            after = (at - k.at for eid, (_, part) in self.sent.items() if part in k.partitions
                     for at, v in outputs.get(eid, ()) if v["decided_at"] > k.at * 1000)
            # None: nothing to recover (no partition, or no payment on them sent after the kill).
            paid_after = any(part in k.partitions and sent > k.at for sent, part in self.sent.values())
            k.recovery_s = min(after, default=math.inf) if paid_after else None
            near = [eid for eid, (sent, _) in self.sent.items()
                    if k.at - AROUND_KILL_S[0] <= sent <= k.at + AROUND_KILL_S[1]]
            k.worst_latency_s = max((self._latency(eid) for eid in near), default=0.0)
            # Its window [at - 5 s, at + 30 s] holds a broker outage: the broker's, not the kill's.
            k.broker_down = any(b.at <= k.at + AROUND_KILL_S[1] and k.at - AROUND_KILL_S[0] <= b.at + b.down_s
                                for b in self.broker_kills)
        for b in self.broker_kills:
            near = [eid for eid, (sent, _) in self.sent.items()
                    if b.at - AROUND_KILL_S[0] <= sent <= b.at + AROUND_KILL_S[1]]
            b.worst_latency_s = max((self._latency(eid) for eid in near), default=0.0)
            back = b.at + b.down_s
            b.recovery_s = min((at - back for got in outputs.values() for at, _ in got if at > back),
                               default=math.inf)
        latencies = sorted(self._latency(eid) for eid in self.sent)
        # The group's pace without faults: payments sent well before the first kill (of either kind).
        first_fault = min((k.at for k in [*self.kills, *self.broker_kills]), default=math.inf)
        calm_until = first_fault - AROUND_KILL_S[0]
        calm = sorted(self._latency(eid) for eid, (sent, _) in self.sent.items() if sent < calm_until)
        behind = await self._offsets_behind()
        feature_diffs = await self._features_diff(oracle)
        credit_exact, credit_bounded, credit_off = self._credit_diff()
        crashed = [m.name for m in self.members if m.alive() and m.proc.proc.poll() is not None]
        crash_logs = [f"{m.name}: {why}" for m in self.members if (why := _crash_reason(m.proc.log_path))]
        hard_stops = [m.name for m in self.members if m.how == "stopped" and m.proc.proc.returncode == -9]
        now = time.time()
        for m in self.live():  # a worker that stopped answering for good has been silent until now
            if m.last_ok is not None:
                m.worst_gap = max(m.worst_gap, now - m.last_ok)
        silent = [f"{m.name} {m.worst_gap:.1f} s" for m in self.members if m.worst_gap > plan.stats_gap_s]
        never = [m.name for m in self.members if m.first_ok is None
                 and ((m.ended or time.time()) - m.started) > plan.startup_s]
        owners = [p for m in self.running() for p in m.partitions]
        figures = {
            "sent (records / payments)": f"{len(self.records)} / {len(self.sent)}",
            "send errors": self.send_errors,
            "decided": len(self.sent) - len(undecided),
            "lost": len(undecided),
            "repeated (of which disagreeing)": f"{repeats} ({disagree})"
            + (", read_committed" if plan.exactly_once else ""),
            "drain after traffic": f"{drained_s:.1f} s",
            "produce->decision p50 / p99 / max": _quantiles(latencies),
            "same, sent before the first kill": _quantiles(calm),
            "worst latency around a kill": _fmt(max((k.worst_latency_s for k in self.kills), default=0.0)),
            "credit balances checked (exact / bounded)": f"{credit_exact} / {credit_bounded}",
            # Each revocation a worker went through after the traffic began (a joining worker's first
            # included): on a calm run, every one is a rebalance no fault caused.
            "rebalances seen by workers": sum(
                m.stats.get("rebalances", 0) - self.rebalances_before.get(m.name, 0) for m in self.members),
        }
        if self.broker_kills:
            figures["broker kills (longest down)"] = (
                f"{len(self.broker_kills)} ({max(b.down_s for b in self.broker_kills):.1f} s)")
            figures["worst latency around a broker kill"] = _fmt(
                max(b.worst_latency_s for b in self.broker_kills))
        uncommitted = self._uncommitted() if plan.exactly_once else []
        if plan.exactly_once:
            raw_repeats, raw_differing = repeat_differences(
                {e: [v for _, v in got] for e, got in self.decisions.items() if e in self.sent})
            figures["repeated, read_uncommitted"] = (
                f"{raw_repeats} ({len(raw_differing)} disagreeing; aborted transactions' decisions)")
            figures["undecided, read_committed"] = len(uncommitted)
        checks = [
            (f"every payment decided ({len(undecided)} of {len(self.sent)} lost: {undecided[:5]})",
             not undecided and bool(self.sent)),
            (f"repeats are the same decision, identical but for decided_at ({disagree} of {repeats} "
             f"differ: {differing[:3]})", not differing),
            (f"features equal the brute-force oracle ({len(feature_diffs)} entities differ: "
             f"{dict(list(feature_diffs.items())[:2])})", not feature_diffs),
            (f"no worker crashed on its own (exited: {crashed}, 'Crashed' in logs: {crash_logs}, "
             f"needed SIGKILL to stop: {hard_stops})", not (crashed or crash_logs or hard_stops)),
            (f"every worker answered /stats throughout (silent > {plan.stats_gap_s:.0f} s: {silent}; "
             f"never answered: {never})", not (silent or never)),
            (f"live workers own every input partition once ({sorted(owners)})",
             sorted(owners) == list(range(PARTITIONS))),
            (f"committed offsets at the end of every input partition (behind: {behind})", not behind),
            (f"credit_outstanding of every user equals the brute force from what was sent and decided "
             f"({credit_exact} exactly, {credit_bounded} within bounds; {len(credit_off)} off: "
             f"{dict(list(credit_off.items())[:5])})", not credit_off),
            (f"at least {plan.kills} SIGKILLs with restarts, a join and a graceful stop",
             len(self.kills) >= plan.kills and len(self.members) >= 3 + plan.kills
             and any(m.how == "stopped" for m in self.members)) if plan.kills else
            ("no worker fault (a calm run)", not self.kills and len(self.members) == 2),
        ]
        if plan.broker_kills:
            checks.append((f"{plan.broker_kills} broker SIGKILLs, each restarted (down: "
                           f"{[round(b.down_s, 1) for b in self.broker_kills]} s)",
                           len(self.broker_kills) >= plan.broker_kills
                           and all(math.isfinite(b.down_s) for b in self.broker_kills)))
        if plan.exactly_once:
            twice = [(eid, len(got)) for eid, got in self.committed_decisions.items()
                     if len(got) > 1 and eid in self.sent]
            checks.append((f"exactly-once: a read_committed reader sees one decision per payment "
                           f"({len(uncommitted)} without one: {uncommitted[:5]}; {len(twice)} with more: "
                           f"{twice[:5]})", not uncommitted and not twice and bool(self.sent)))
        return ChaosResult(checks, figures, self.kills, self.members, self.broker_kills)

    def _latency(self, eid: str) -> float:
        got = self.outputs.get(eid)
        return got[0][0] - self.sent[eid][0] if got else math.inf


def credit_bounds(records: list[Record], first_action: dict[str, str]) -> dict[str, tuple[int, int]]:
    """What each user's `credit_outstanding` must be (minor units, low <= it <= high), recomputed from
    the records sent and each payment's first decision, under the credit policy (credit/user.py):

    - a credit_line payment first decided approve or review draws its amount; nothing else draws;
    - a user repayment pays the balance down, but never below zero (so the result depends on the order
      the user's payments and repayments were processed in, across topics);
    - a chargeback reverses its payment's draw if the draw came first (order again).

    A user with only payments (no repayment, no chargeback) gets an exact figure: the sum of the draws.
    Any other gets bounds that hold in every order: at most the draws, at least the draws less the
    repayments and the charged-back draws (and zero). Every user with a credit_line payment is included;
    none of the default policy's reviews, cuts or freezes moves the balance.
    """
    drawn: dict[str, int] = {}  # user -> sum of draws
    draw_of: dict[str, tuple[str, int]] = {}  # payment id -> (user, amount drawn)
    paid_down: dict[str, int] = {}  # user -> repayments and charged-back draws
    for rec in records:
        v = rec.value
        if rec.topic == "payments" and v["method"] == "credit_line":
            user = v["user_id"]
            amount = to_minor(v["amount"]) if first_action.get(v["event_id"]) in DRAWING else 0
            drawn[user] = drawn.get(user, 0) + amount
            if amount:
                draw_of[v["event_id"]] = (user, amount)
    for rec in records:
        v = rec.value
        if rec.topic == "repayments" and v["account_type"] == "user":
            paid_down[v["account_id"]] = paid_down.get(v["account_id"], 0) + to_minor(v["amount"])
        elif rec.topic == "chargebacks":
            user, amount = draw_of.get(v["payment_id"], (v["user_id"], 0))
            paid_down[user] = paid_down.get(user, 0) + amount
            paid_down.setdefault(v["user_id"], 0)
    return {user: (max(0, d - paid_down[user]) if user in paid_down else d, d) for user, d in drawn.items()}


def repeat_differences(decisions: dict[str, list[dict[str, Any]]]) -> tuple[int, list[str]]:
    """(repeats, how each differing repeat differs): every later decision of a payment against its first,
    over every field of either record except `decided_at`."""
    repeats, differing = 0, []
    for eid, got in decisions.items():
        first = got[0]
        for again in got[1:]:
            repeats += 1
            diff = {f: (first.get(f), again.get(f)) for f in sorted(first.keys() | again.keys())
                    if f != "decided_at" and first.get(f) != again.get(f)}
            if diff:
                differing.append(f"{eid}: {diff}")
    return repeats, differing


def _quantiles(latencies: list[float]) -> str:
    """p50 / p99 / max of sorted latencies."""
    if not latencies:
        return "n/a"
    last = len(latencies) - 1
    return " / ".join(_fmt(latencies[min(last, int(q * len(latencies)))]) for q in (0.5, 0.99, 1.0))


def _fmt(seconds: float) -> str:
    return "undecided" if math.isinf(seconds) else f"{seconds * 1000:.0f} ms"


def _crash_reason(log: Path) -> str:
    """The first line where Faust reports a crashed service in a worker's log ('' when none)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    at = text.find("Crashed reason=")
    return text[at:text.find("\n", at)][:300] if at >= 0 else ""
