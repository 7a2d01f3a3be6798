"""Integration-test tools: worker processes on the session broker, and a plain aiokafka client.

Each test module gets its own topic prefix and application id, so tests never see each other's records.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streamrisk.broker import worker_env_for
from streamrisk.core.topic_names import consumer_group
from streamrisk.procs import free_port, log_tail, spawn, terminate
from streamrisk.settings import Settings

# Short group timeouts: a group's first join on the embedded broker takes max(1 s, session/2).
FAST_GROUP_ENV = {
    "STREAMRISK_SESSION_TIMEOUT_S": "6",
    "STREAMRISK_HEARTBEAT_INTERVAL_S": "0.5",
    "STREAMRISK_LOG_LEVEL": os.environ.get("STREAMRISK_TEST_WORKER_LOG_LEVEL", "warning"),
    # Tests keep state in memory (restored from the changelog at each start) unless they test RocksDB;
    # STREAMRISK_TEST_STORE=rocksdb runs them (and scripts/chaos.py) on the workers' default store.
    "STREAMRISK_STORE": os.environ.get("STREAMRISK_TEST_STORE", "memory"),
}


class WorkerProcess:
    """`streamrisk worker` in a child process that dies with the test run."""

    def __init__(self, bootstrap: str, prefix: str, app_id: str, data_dir: Path, web_port: int | None = None,
                 **env: str) -> None:
        self.web_port = web_port or free_port()
        self.data_dir = data_dir
        self.log_path = data_dir / f"worker-{self.web_port}.log"
        self.env = {
            **os.environ,
            **FAST_GROUP_ENV,
            "STREAMRISK_BOOTSTRAP": bootstrap,
            "STREAMRISK_TOPIC_PREFIX": prefix,
            "STREAMRISK_APP_ID": app_id,
            "STREAMRISK_DATA_DIR": str(data_dir),
            "STREAMRISK_WEB_PORT": str(self.web_port),
            **worker_env_for(bootstrap),
            **env,
        }
        self.proc = None

    def start(self) -> WorkerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = spawn(
            [sys.executable, "-m", "streamrisk", "worker"], log_path=self.log_path, env=self.env
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last commit."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):  # it may have exited on its own
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, grace=10)

    def log(self) -> str:
        return log_tail(self.log_path, 60)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.web_port}{path}"


class Client:
    """Produce contract records and read output topics, as any external service would."""

    def __init__(self, bootstrap: str, prefix: str) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.producer: AIOKafkaProducer | None = None

    async def __aenter__(self) -> Client:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.producer is not None
        await self.producer.stop()

    async def send(self, topic: str, key: str | None, value: dict[str, Any] | bytes) -> None:
        assert self.producer is not None
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        await self.producer.send_and_wait(
            self.prefix + topic, raw, key=key.encode() if key is not None else None
        )

    async def read(
        self,
        topic: str,
        *,
        until: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 30.0,
        settle: float = 0.0,
        committed: bool = False,
        with_key: bool = False,
    ) -> list[dict[str, Any]]:
        """All records on `topic` from the start, once `until(records)` holds (plus `settle` seconds,
        to catch records that should NOT arrive); raises TimeoutError with what was read.
        `committed`: as a `read_committed` consumer (records of aborted transactions never seen).
        `with_key`: each value also holds its message key (bytes or None) as `"_key"`."""
        name = self.prefix + topic
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, fetch_max_wait_ms=10,
            isolation_level="read_committed" if committed else "read_uncommitted",
        )
        await consumer.start()
        out: list[dict[str, Any]] = []
        try:
            deadline = time.monotonic() + timeout
            parts: Iterable[int] | None = None
            while not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(name)
                if time.monotonic() > deadline:
                    raise TimeoutError(f"topic {name} never appeared")
                if not parts:
                    await asyncio.sleep(0.2)
            tps = [TopicPartition(name, p) for p in parts]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            done_at: float | None = None
            while True:
                batch = await consumer.getmany(timeout_ms=100)
                for records in batch.values():
                    out.extend({**orjson.loads(r.value), "_key": r.key} if with_key else orjson.loads(r.value)
                               for r in records)
                now = time.monotonic()
                if done_at is None and until(out):
                    done_at = now + settle
                if done_at is not None and now >= done_at:
                    return out
                if now > deadline:
                    raise TimeoutError(f"{name}: condition not met in {timeout} s; read {out!r}"[:4000])
        finally:
            await consumer.stop()


async def get_json(session: aiohttp.ClientSession, worker: WorkerProcess, path: str) -> dict | None:
    """A worker's JSON answer at `path`, or None when it does not answer 200 (yet)."""
    try:
        async with session.get(worker.url(path)) as resp:
            return await resp.json() if resp.status == 200 else None
    except aiohttp.ClientConnectionError:  # not listening yet
        return None


async def features(session: aiohttp.ClientSession, workers: list[WorkerProcess], path: str) -> dict | None:
    """The entity from whichever worker owns it (the others answer 404)."""
    for w in workers:
        body = await get_json(session, w, path)
        if body is not None:
            return body["features"]
    return None


async def wait_for(check: Callable[[], Awaitable[object]], timeout: float, what: str) -> None:
    """Poll `check` until it returns True; fail with its last answer."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = await check()
        if last is True:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"{what} not reached in {timeout} s; last: {last!r}")


def group_of(prefix: str, app_id: str) -> str:
    """The consumer group of the workers started with this prefix and app id."""
    return consumer_group(Settings(topic_prefix=prefix, app_id=app_id))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def now_ms() -> int:
    return int(time.time() * 1000)


def payment(event_id: str, user: str, merchant: str = "m1", amount: float = 25.0, **kw: Any) -> dict:
    return {
        "event_id": event_id,
        "ts": kw.pop("ts", now_ms()),
        "user_id": user,
        "merchant_id": merchant,
        "amount": amount,
        "currency": "CNY",
        "method": kw.pop("method", "card"),
        "device_id": kw.pop("device_id", "dev-1"),
        **kw,
    }


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """The end offset of every partition of `topics`: the listed one, raised to the high watermark a
    fetch reports (some brokers list the start of the last record batch as the end)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10)
    await consumer.start()
    try:
        # The consumer caches metadata only of topics it tracks (none here, on Apache Kafka): ask for all.
        cluster = await consumer._client.fetch_all_metadata()
        tps = [TopicPartition(t, p) for t in topics for p in sorted(cluster.partitions_for_topic(t) or ())]
        if not tps:
            return {}
        consumer.assign(tps)
        ends = dict(await consumer.end_offsets(tps))
        probe = [tp for tp in tps if ends[tp] > 0]
        for tp in probe:
            consumer.seek(tp, ends[tp] - 1)
        deadline = time.monotonic() + 5
        while probe and time.monotonic() < deadline:
            await consumer.getmany(*probe, timeout_ms=100, max_records=1)
            for tp in list(probe):
                hw = consumer.highwater(tp)
                if hw is not None:
                    ends[tp] = max(ends[tp], hw)
                    probe.remove(tp)
        return ends
    finally:
        await consumer.stop()


async def committed_offsets(
    bootstrap: str, group: str, tps: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """The consumer group's committed offset of each of `tps` (0 where it committed none). Asked by a
    consumer that names the group but never joins it (OffsetFetch, as the group's members do)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {tp: (await consumer.committed(tp)) or 0 for tp in tps}
    finally:
        await consumer.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process so far, from /proc/PID/stat (0.0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def stuck_report(bootstrap: str, prefix: str, app_id: str, workers: list[WorkerProcess]) -> str:
    """What a test that timed out needs to say why: each worker's /ready and assignment, and every
    changelog and input partition's stable end (read_committed) against its high watermark, where an
    open transaction shows as a gap. Best effort: a part that cannot be read says so."""
    lines: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for w in workers:
            alive = w.proc is not None and w.proc.poll() is None
            ready = await get_json(session, w, "/ready") if alive else None
            stats = await get_json(session, w, "/stats") if alive else None
            stats = stats or {}
            lines.append(
                f"worker :{w.web_port} alive={alive} ready={ready} "
                f"assigned={stats.get('assigned_partitions')} lag={stats.get('consumer_lag')}"
            )
    try:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
        await consumer.start()
        try:
            cluster = await consumer._client.fetch_all_metadata()
            topics = sorted(t for t in cluster.topics() if t.startswith(prefix))
            tps = [TopicPartition(t, p) for t in topics for p in sorted(cluster.partitions_for_topic(t))]
            stable = await consumer.end_offsets(tps)
        finally:
            await consumer.stop()
        high = await end_offsets(bootstrap, topics)
        for tp in tps:
            gap = "" if high.get(tp) == stable[tp] else "  <- open transaction"
            lines.append(f"{tp.topic}[{tp.partition}] stable={stable[tp]} high={high.get(tp)}{gap}")
        group = group_of(prefix, app_id)
        inputs = [tp for tp in tps if not tp.topic.startswith(prefix + app_id)]
        committed = await committed_offsets(bootstrap, group, inputs)
        lines += [f"committed {tp.topic}[{tp.partition}] = {off}" for tp, off in committed.items()]
    except Exception as exc:  # the report must not hide the failure it explains
        lines.append(f"(broker state unreadable: {exc!r})")
    return "\n".join(lines)
