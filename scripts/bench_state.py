"""A worker holding many users' state: restart to first decision with RocksDB against rebuilding from the
changelog (the memory store), RSS of each, and failover with and without standby replicas.

Part 1 (workers on the embedded Apache Kafka broker). The state of `--users` users (each one credit_line
payment's worth: a template user's state from the processor's core, id and partition replaced; see
`state_records`), on `--partitions` partitions, is written to the state changelog as workers would
leave it, compacted (one record per key). Then `--repeat` rounds of:
  - memory: a worker with `STREAMRISK_STORE=memory` starts and rebuilds from the whole changelog;
  - rocksdb: a worker with RocksDB restarts on a data dir its predecessor closed cleanly (the first
    round's predecessor is a cold start that restored everything into RocksDB, timed too).
Each is timed from process start to the decision of a payment (an existing user's) sent just before
it started, and its RSS (VmRSS) is read once it has decided. Ratios are memory / rocksdb of one round.

Part 2 (`--state-users`, no broker): the same state for that many users written in a child process to a
dict (what the memory store's worker holds) and to RocksDB with the worker's options (what they keep in
memory); each child's RSS at the end. This state-only harness measures what a worker's table costs in
memory where a full worker run would take too long.

Part 3 (`--failover`): two workers (RocksDB) share `--partitions` partitions under a steady stream of
payments, over `--fo-state-users` users' state (written to the changelog first, as in part 1); once both
are ready, the one with more input partitions is SIGKILLed, and the worst produce -> decision latency of
the payments around the kill is read from risk-decisions (`decided_at` - the producer's send time),
without and with `STREAMRISK_STANDBY_REPLICAS=1`.

Run: .venv/bin/python scripts/bench_state.py [--users 100000] [--partitions 4] [--repeat 2]
     [--state-users N] [--failover] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from streamrisk.broker import start_broker, worker_env_for
from streamrisk.core.partitioning import kafka_partition
from streamrisk.core.processor import Processor
from streamrisk.core.records import Message
from streamrisk.core.topic_names import changelog_topic
from streamrisk.procs import free_port, log_tail, spawn, terminate
from streamrisk.runtime.topics import ensure_topics
from streamrisk.settings import Settings
from streamrisk.state.keys import entity_of
from streamrisk.state.kv import DictKV
from streamrisk.state.sweep import key_partition

T0 = int(time.time() * 1000) - 86_400_000  # a day ago: events more than a few minutes ahead are refused
MERCHANTS = 500
TEMPLATES = 1000
DECISION_TIMEOUT_S = float(os.environ.get("BENCH_DECISION_TIMEOUT_S", "600"))
PARTITION_FIELD = re.compile(rb'"partition":\d+')
PAGE = os.sysconf("SC_PAGE_SIZE")
GROUP_ENV = {"STREAMRISK_SESSION_TIMEOUT_S": "6", "STREAMRISK_HEARTBEAT_INTERVAL_S": "0.5",
             "STREAMRISK_LOG_LEVEL": os.environ.get("STREAMRISK_LOG_LEVEL", "warning")}


def template(settings: Settings, users: int) -> tuple[dict[str, list[tuple[bytes, bytes]]], list]:
    """The state of `users` template users (one credit_line payment each, through the processor's core)
    by user id, and their merchants' records as (partition, key, value)."""
    kv = PartitionedKV()
    proc = Processor(settings, kv)
    msgs = []
    for j in range(users):
        user = template_id(j)
        value = {"event_id": f"p{j}", "ts": T0 + j, "user_id": user, "merchant_id": f"m{j % MERCHANTS}",
                 "amount": 20.0 + j % 50, "currency": "CNY", "method": "credit_line", "device_id": f"d{j}"}
        msgs.append(Message(settings.topic("payments"), key_partition(user, settings.partitions), j,
                            user.encode(), orjson.dumps(value)))
    proc.run_local(msgs, T0 + users + 60_000)
    by_user: dict[str, list[tuple[bytes, bytes]]] = {}
    shared = []
    for key, value in kv.data.items():
        entity = entity_of(key)
        if entity is not None and entity.startswith("t"):
            by_user.setdefault(entity, []).append((key, value))
        else:
            shared.append((kv.partition_of[key], key, value))
    return by_user, shared


def template_id(j: int) -> str:
    return f"t{j:07d}"


def user_id(i: int) -> str:
    return f"u{i:07d}"  # as long as a template's id: the records are the template's with the id replaced


def state_records(settings: Settings, users: int) -> Iterator[tuple[int, bytes, bytes]]:
    """(partition, key, value) of `users` users' state: each user's records are those of a template user
    (TEMPLATES of them, built by the processor's core) with the id and partition replaced, so a large
    state is written in seconds, not hours, and every user's records are valid state."""
    by_user, shared = template(settings, min(users, TEMPLATES))
    yield from shared
    for i in range(users):
        j = i % TEMPLATES
        tid, uid = template_id(j).encode(), user_id(i).encode()
        p = kafka_partition(uid, settings.partitions)
        part = b'"partition":%d' % p
        for key, value in by_user[template_id(j)]:
            yield p, key.replace(tid, uid), PARTITION_FIELD.sub(part, value).replace(tid, uid)


def rss_mb(pid: int | None = None) -> float:
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# -- part 1
async def write_changelog(settings: Settings, users: int) -> tuple[int, int]:
    topic = changelog_topic(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=20,
                                max_batch_size=1 << 20, max_request_size=4 << 20)
    await producer.start()
    try:
        batches: dict[int, object] = {}
        sends = []
        n = size = 0
        for p, key, value in state_records(settings, users):
            size += len(key) + len(value)
            batch = batches.get(p)
            if batch is None:
                batch = batches[p] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                sends.append(await producer.send_batch(batch, topic, partition=p))
                batch = batches[p] = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
            n += 1
        for p, batch in batches.items():
            sends.append(await producer.send_batch(batch, topic, partition=p))
        await asyncio.gather(*sends)
        return n, size
    finally:
        await producer.stop()


class PartitionedKV(DictKV):
    """A dict KV that remembers each key's changelog partition."""

    def __init__(self) -> None:
        super().__init__(log=False)
        self.partition_of: dict[bytes, int] = {}

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        super().put(partition, key, value)
        self.partition_of[key] = partition

    def delete(self, partition: int, key: bytes) -> None:
        super().delete(partition, key)
        self.partition_of.pop(key, None)


def worker_env(settings: Settings, data_dir: Path, store: str, **extra: str) -> dict[str, str]:
    return {**os.environ, **GROUP_ENV, **worker_env_for(settings.bootstrap),
            "STREAMRISK_BOOTSTRAP": settings.bootstrap, "STREAMRISK_TOPIC_PREFIX": settings.topic_prefix,
            "STREAMRISK_APP_ID": settings.app_id, "STREAMRISK_PARTITIONS": str(settings.partitions),
            "STREAMRISK_DATA_DIR": str(data_dir), "STREAMRISK_WEB_PORT": str(free_port()),
            "STREAMRISK_STORE": store, **extra}


async def decision_of(
    settings: Settings, event_ids: set[str], start: dict, timeout: float
) -> dict[str, dict]:
    """The decisions of `event_ids` on risk-decisions, read from offsets `start` on."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap, fetch_max_wait_ms=20)
    await consumer.start()
    found: dict[str, dict] = {}
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout
        while len(found) < len(event_ids) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                for r in records:
                    d = orjson.loads(r.value)
                    if d["event_id"] in event_ids and d["event_id"] not in found:
                        found[d["event_id"]] = {**d, "_seen": time.time()}
        return found
    finally:
        await consumer.stop()


async def decisions_end(settings: Settings) -> dict:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap)
    await consumer.start()
    try:
        topic = settings.topic("risk-decisions")
        tps = [TopicPartition(topic, p) for p in range(settings.partitions)]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def restart_to_decision(settings: Settings, data_dir: Path, store: str, probe: int,
                              log: Path) -> tuple[float, float, dict]:
    """Start a worker, time it to the decision of a payment sent just before; (s, RSS MB, state stats)."""
    start = await decisions_end(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all")
    await producer.start()
    user = user_id(probe % 1000)
    eid = f"probe-{probe}"
    value = {"event_id": eid, "ts": int(time.time() * 1000), "user_id": user, "merchant_id": "m1",
             "amount": 5.0, "currency": "CNY", "method": "card"}
    await producer.send_and_wait(settings.topic("payments"), orjson.dumps(value), key=user.encode())
    await producer.stop()
    env = worker_env(settings, data_dir, store)
    began = time.monotonic()
    proc = spawn([sys.executable, "-m", "streamrisk", "worker"], log_path=log, env=env)
    try:
        found = await decision_of(settings, {eid}, start, DECISION_TIMEOUT_S)
        took = time.monotonic() - began
        if eid not in found:
            tail = log_tail(log, 80)
            raise RuntimeError(f"no decision for {eid} in {DECISION_TIMEOUT_S} s; the worker's log:\n{tail}")
        rss = rss_mb(proc.pid)
        stats = await worker_stats(int(env["STREAMRISK_WEB_PORT"]))
        return took, rss, stats
    finally:
        terminate(proc, grace=60)


async def worker_stats(port: int, part: str | None = "state_store") -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/stats") as resp:
        body = await resp.json()
    return body.get(part, {}) if part else body


async def part1(args: argparse.Namespace, work: Path) -> None:
    with start_broker("kafka", data_dir=work / "broker") as broker:
        settings = Settings(bootstrap=broker.bootstrap, topic_prefix="bench.", app_id="state",
                            partitions=args.partitions)
        await ensure_topics(settings)
        t = time.perf_counter()
        records, size = await write_changelog(settings, args.users)
        print(f"state of {args.users:,} users: {records:,} changelog records, {size / 2**20:.0f} MB "
              f"(written in {time.perf_counter() - t:.0f} s)")
        rocks_dir = work / "rocks"
        probe = 0
        took, rss, stats = await restart_to_decision(settings, rocks_dir, "rocksdb", probe, work / "cold.log")
        print(f"rocksdb cold start (empty data dir): first decision after {took:.1f} s, RSS {rss:.0f} MB, "
              f"restored {stats.get('restored_records'):,} records")
        for rnd in range(1, args.repeat + 1):
            probe += 1
            m_took, m_rss, _ = await restart_to_decision(
                settings, work / f"mem{rnd}", "memory", probe, work / f"mem{rnd}.log")
            probe += 1
            r_took, r_rss, r_stats = await restart_to_decision(
                settings, rocks_dir, "rocksdb", probe, work / f"rocks{rnd}.log")
            print(f"round {rnd}: memory (rebuild from the changelog) {m_took:.1f} s, RSS {m_rss:.0f} MB | "
                  f"rocksdb (clean restart) {r_took:.1f} s, RSS {r_rss:.0f} MB, restored "
                  f"{r_stats.get('restored_records')} records, {r_stats.get('partitions_reused')} partitions "
                  f"reused | ratio time {m_took / r_took:.1f}x, RSS {m_rss / r_rss:.1f}x")


async def answered(stats: Any) -> dict:
    """A worker's /stats, or {} while it does not listen yet."""
    try:
        return await stats
    except OSError:  # aiohttp's connection errors are OSErrors
        return {}


# -- part 2
def state_child(kind: str, users: int, partitions: int, path: str) -> None:
    settings = Settings(partitions=partitions)
    t = time.perf_counter()
    if kind == "memory":
        table: dict[bytes, bytes] = {}  # what the memory store holds: the table's keys and values
        for _, key, value in state_records(settings, users):
            table[key] = value
    else:
        kv = RocksOnlyKV(Path(path), partitions)
        for p, key, value in state_records(settings, users):
            kv.put(p, key, value)
    gc.collect()
    print(orjson.dumps({"rss_mb": rss_mb(), "s": time.perf_counter() - t}).decode())


class RocksOnlyKV:
    """The worker's RocksDB partitions and options (rocks.py), without Faust: for the state-only RSS."""

    def __init__(self, path: Path, partitions: int) -> None:
        from streamrisk.runtime.faust.rocks import StateStore, _Options

        opts = _Options(StateStore.memory_bytes)
        self.dbs = [opts.open(path / f"state-{p}.db") for p in range(partitions)]
        self.partitions = partitions

    def get(self, key: bytes) -> bytes | None:
        for db in self.dbs:
            value = db.get(key)
            if value is not None:
                return value
        return None

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self.dbs[partition].put(key, value)

    def delete(self, partition: int, key: bytes) -> None:
        self.dbs[partition].delete(key)


def part2(args: argparse.Namespace, work: Path) -> None:
    for kind in ("memory", "rocksdb"):
        out = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--state-users", str(args.state_users),
             "--partitions", str(args.partitions), "--work", str(work / f"state-{kind}")],
            check=True, capture_output=True, text=True,
        )
        res = orjson.loads(out.stdout.strip().splitlines()[-1])
        print(f"state only, {args.state_users:,} users on {kind}: RSS {res['rss_mb']:.0f} MB "
              f"(built in {res['s']:.0f} s)")


# -- part 3
async def failover(args: argparse.Namespace, work: Path, standbys: int) -> None:
    with start_broker("kafka", data_dir=work / f"fo-broker-{standbys}") as broker:
        settings = Settings(bootstrap=broker.bootstrap, topic_prefix=f"fo{standbys}.", app_id="fo",
                            partitions=args.partitions)
        await ensure_topics(settings)
        if args.fo_state_users:  # state the killed worker's partitions hold, to restore or not
            await write_changelog(settings, args.fo_state_users)
        extra = {"STREAMRISK_STANDBY_REPLICAS": str(standbys)}
        procs = []
        ports = []
        for n in range(2):
            env = worker_env(settings, work / f"fo{standbys}-w{n}", "rocksdb", **extra)
            ports.append(int(env["STREAMRISK_WEB_PORT"]))
            procs.append(spawn([sys.executable, "-m", "streamrisk", "worker"],
                               log_path=work / f"fo{standbys}-w{n}.log", env=env))
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap, acks="all", linger_ms=1)
        await producer.start()
        start = await decisions_end(settings)
        sent: dict[str, float] = {}
        i = 0
        interval = 1 / args.rate
        killed_at = None

        async def send_for(seconds: float) -> None:
            nonlocal i
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                user = user_id(i % args.fo_users)
                eid = f"f{i}"
                value = {"event_id": eid, "ts": int(time.time() * 1000), "user_id": user, "merchant_id": "m1",
                         "amount": 10.0, "currency": "CNY", "method": "card"}
                sent[eid] = time.time()
                await producer.send(settings.topic("payments"), orjson.dumps(value), key=user.encode())
                i += 1
                await asyncio.sleep(interval)

        try:
            # Both workers join and restore (and the standbys catch up), under traffic.
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                await send_for(2)
                stats = [await answered(worker_stats(port, None)) for port in ports]
                lag = sum(sum((st.get("consumer_lag") or {}).values()) for st in stats)
                if all(st.get("ready") for st in stats) and lag < args.rate:
                    break
            await send_for(args.warmup)
            warm = set(sent)
            await send_for(5)
            # The worker with the most input partitions is killed (a standby's partitions are not
            # among them); the other takes them over.
            owned = [len((await worker_stats(port, None)).get("assigned_partitions") or ()) for port in ports]
            victim = 0 if owned[0] >= owned[1] else 1
            killed_at = time.time()
            procs[victim].kill()
            procs[victim].wait()
            await send_for(args.after)
            found = await decision_of(settings, set(sent), start, 120)
            survivor = await worker_stats(ports[1 - victim])
        finally:
            await producer.stop()
            for p in procs:
                terminate(p, grace=20)
        around = [eid for eid in sent if eid not in warm]
        missing = [e for e in around if e not in found]
        lat = sorted((found[e]["decided_at"] / 1000 - sent[e]) * 1000 for e in around if e in found)
        after = [(found[e]["decided_at"] / 1000 - sent[e]) * 1000 for e in around
                 if e in found and sent[e] >= (killed_at or 0)]
        print(f"failover, standby replicas {standbys}: input partitions before the kill {owned}, "
              f"{len(around)} payments around the kill, "
              f"{len(missing)} undecided; latency p50 {lat[len(lat) // 2]:.0f} ms, "
              f"max {max(lat):.0f} ms; max of those sent after the kill {max(after):.0f} ms; the survivor "
              f"restored {survivor.get('restored_records')} changelog records in all")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--state-users", type=int, default=None, help="part 2's users (default: --users)")
    ap.add_argument("--skip-part1", action="store_true")
    ap.add_argument("--failover", action="store_true", help="part 3 only")
    ap.add_argument("--rate", type=float, default=200.0, help="part 3: payments per second")
    ap.add_argument("--fo-users", type=int, default=20_000, help="part 3: distinct users")
    ap.add_argument("--warmup", type=float, default=10.0, help="part 3: s of traffic once both ready")
    ap.add_argument("--fo-state-users", type=int, default=200_000, help="part 3: users' state")
    ap.add_argument("--after", type=float, default=30.0)
    ap.add_argument("--standbys", default="0,1", help="part 3: the standby replica counts to run")
    ap.add_argument("--work", help="a folder to work in and keep (workers' logs)")
    ap.add_argument("--child", choices=("memory", "rocksdb"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.state_users is None:
        args.state_users = args.users
    if args.child:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        state_child(args.child, args.state_users, args.partitions, args.work)
        return
    print(f"machine: {os.cpu_count()} cores; partitions {args.partitions}")
    with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp:
        work = Path(args.work or tmp)  # --work DIR keeps the workers' logs
        work.mkdir(parents=True, exist_ok=True)
        if args.failover:
            for standbys in (int(n) for n in args.standbys.split(",")):
                asyncio.run(failover(args, work, standbys))
            return
        if not args.skip_part1:
            asyncio.run(part1(args, work))
        part2(args, work)


if __name__ == "__main__":
    main()
