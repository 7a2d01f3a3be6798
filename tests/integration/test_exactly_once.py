"""Exactly-once and the failure paths around it, on the real brokers.

- An output topic that refuses a record: the worker stops loudly, commits nothing past the record,
  and the restarted worker decides it (item 1 of issue 17); a dead letter is cut to fit its topic.
- Exactly-once (Apache Kafka; Tansu has no transactions): a `read_committed` reader sees one
  decision per payment across SIGKILLs, and a worker paused past its session cannot commit.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streamrisk.broker import start_broker
from tests.harness import Client, WorkerProcess, get_json, payment, stuck_report, unique, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


async def _topic_with_limit(bootstrap: str, topic: str, max_bytes: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        config = {"max.message.bytes": str(max_bytes)}
        await admin.create_topics([NewTopic(topic, 4, 1, topic_configs=config)])
    finally:
        await admin.close()


async def _set_limit(bootstrap: str, topic: str, max_bytes: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": str(max_bytes)})]
        )
    finally:
        await admin.close()


async def _send_payments(client: Client, ids: list[str], users: int) -> None:
    assert client.producer is not None
    for i, eid in enumerate(ids):
        user = f"u{i % users}"
        value = orjson.dumps(payment(eid, user))
        await client.producer.send(client.prefix + "payments", value, key=user.encode())
    await client.producer.flush()


async def _decided_once_each(client: Client, sent: list[str], timeout: float, settle: float) -> None:
    """A read_committed reader sees one decision for every payment sent, and no second one."""
    decisions = await client.read(
        "risk-decisions", until=lambda rs: {r["event_id"] for r in rs} >= set(sent),
        timeout=timeout, settle=settle, committed=True,
    )
    counts = _once_each(decisions, sent)
    assert max(counts.values()) == 1, f"repeated: {counts.most_common(5)}"


def _all_running(workers: list[WorkerProcess]) -> bool:
    """True; fails at once (with the worker's log) when a worker has stopped, not at a read's timeout."""
    for w in workers:
        assert w.proc.poll() is None, f"a worker stopped:\n{w.log()}"
    return True


def _once_each(decisions: list[dict], sent: list[str]) -> Counter:
    counts = Counter(d["event_id"] for d in decisions)
    assert set(counts) == set(sent), f"undecided: {sorted(set(sent) - set(counts))[:10]}"
    return counts


async def test_an_output_topic_that_refuses_a_record_stops_the_worker_and_the_input_is_decided_after(
    broker_kind: str, bootstrap: str, tmp_path: Path
) -> None:
    if broker_kind == "tansu":
        pytest.skip("Tansu does not enforce a topic's max.message.bytes")
    prefix, app_id = unique("refuse") + ".", unique("app")
    # A decision is a few hundred bytes: this topic takes none.
    await _topic_with_limit(bootstrap, prefix + "risk-decisions", 120)
    fragile = {"STREAMRISK_DELIVERY_TIMEOUT_S": "2", "STREAMRISK_DELIVERY_ATTEMPTS": "2"}
    first = WorkerProcess(bootstrap, prefix, app_id, tmp_path / "a", **fragile).start()
    second = None
    try:
        async with Client(bootstrap, prefix) as client:
            sent = [f"p{i}" for i in range(20)]
            for eid in sent:
                await client.send("payments", f"u{eid}", payment(eid, f"u{eid}"))

            async def stopped() -> object:
                return first.proc.poll() is not None or "still running"

            await wait_for(stopped, 90, "the worker stopping on the refused decision")
            assert first.proc.poll() != 0
            log = first.log_path.read_text()
            assert "stopping the worker" in log, first.log()
            # Every checkpoint after the failed one (rebalance, shutdown) refused to commit.
            assert "TooLarge" in log or "not delivered" in log, first.log()

            await _set_limit(bootstrap, prefix + "risk-decisions", 1024 * 1024)
            second = WorkerProcess(bootstrap, prefix, app_id, tmp_path / "b").start()
            await _decided_once_each(client, sent, 120, 1.0)
    finally:
        first.stop()
        if second is not None:
            second.stop()


async def test_a_dead_letter_larger_than_its_topic_takes_is_cut_to_fit_and_the_worker_goes_on(
    broker_kind: str, bootstrap: str, tmp_path: Path
) -> None:
    prefix, app_id = unique("cut") + ".", unique("app")
    await _topic_with_limit(bootstrap, prefix + "dead-letters", 4000)
    worker = WorkerProcess(bootstrap, prefix, app_id, tmp_path).start()
    try:
        async with Client(bootstrap, prefix) as client:
            bad = b'{"event_id": "' + b"x" * 50_000 + b'"'  # malformed, and 50 KB
            await client.send("payments", "u1", bad)
            await client.send("payments", "u2", payment("after", "u2"))
            letters = await client.read("dead-letters", until=lambda rs: len(rs) >= 1, timeout=90)
            await client.read(
                "risk-decisions", until=lambda rs: any(r["event_id"] == "after" for r in rs), timeout=60
            )
        [letter] = letters
        assert letter["value_truncated"] is True and letter["value_size"] == len(bad)
        assert len(orjson.dumps(letter)) < 4000
        assert worker.proc.poll() is None, worker.log()
    finally:
        worker.stop()


async def test_a_read_committed_reader_sees_one_decision_per_payment_across_sigkills_and_rebalances(
    broker_kind: str, bootstrap: str, tmp_path: Path
) -> None:
    if broker_kind == "tansu":
        pytest.skip("Tansu has no transactions: at-least-once there (repeats are identical)")
    prefix, app_id = unique("eos") + ".", unique("app")
    port_env = {"STREAMRISK_GROUP_INSTANCE_ID": "w1"}
    worker = WorkerProcess(bootstrap, prefix, app_id, tmp_path, **port_env).start()
    other: WorkerProcess | None = None
    n = 6000
    try:
        async with Client(bootstrap, prefix) as client:
            sent = [f"p{i}" for i in range(n)]
            await _send_payments(client, sent, 300)
            async with aiohttp.ClientSession() as http:
                for kill in range(3):

                    async def deciding(w: WorkerProcess = worker) -> object:
                        stats = await get_json(http, w, "/stats")
                        if stats is None:
                            return None
                        lag = stats.get("consumer_lag")
                        done = bool(lag) and not any(lag.values())  # the backlog is all decided
                        return stats["records"] >= 300 or done or stats

                    # Killed mid-backlog, with a transaction open most of the time.
                    await wait_for(deciding, 90, f"the worker deciding before kill {kill + 1}")
                    worker.kill()
                    worker = WorkerProcess(
                        bootstrap, prefix, app_id, tmp_path, web_port=worker.web_port, **port_env
                    ).start()
                    if kill == 0:
                        # A second worker joins mid-backlog (the first commits its open transaction as
                        # its partitions are revoked) and leaves again after the next kill.
                        other = WorkerProcess(bootstrap, prefix, app_id, tmp_path / "other").start()
                    elif kill == 1 and other is not None:
                        other.stop()
            await _decided_once_each(client, sent, 180, 1.0)
    finally:
        worker.stop()
        if other is not None:
            other.stop()


async def test_a_worker_paused_past_its_session_cannot_commit_after_its_partitions_moved(
    broker_kind: str, bootstrap: str, tmp_path: Path
) -> None:
    if broker_kind == "tansu":
        pytest.skip("Tansu has no transactions: zombies are not fenced there")
    prefix, app_id = unique("zombie") + ".", unique("app")
    a = WorkerProcess(bootstrap, prefix, app_id, tmp_path / "a").start()
    b = None
    try:
        async with Client(bootstrap, prefix) as client:
            assert client.producer is not None
            await client.send("payments", "u0", payment("warm-up", "u0"))
            await client.read("risk-decisions", until=lambda rs: len(rs) >= 1, timeout=90, committed=True)
            paused = [f"z{i}" for i in range(2000)]
            sent = ["warm-up", *paused]
            os.kill(a.proc.pid, signal.SIGSTOP)
            try:
                await _send_payments(client, paused, 100)
                # A second worker takes every partition once the paused one's session (6 s) expires.
                b = WorkerProcess(bootstrap, prefix, app_id, tmp_path / "b").start()
                await client.read(
                    "risk-decisions", until=lambda rs: {r["event_id"] for r in rs} >= set(sent),
                    timeout=120, committed=True,
                )
            finally:
                os.kill(a.proc.pid, signal.SIGCONT)
            # The zombie wakes with a fetched batch and an open transaction; whatever it does, a
            # read_committed reader never sees a second decision.
            after = [f"y{i}" for i in range(200)]
            sent += after
            await _send_payments(client, after, 100)
            await _decided_once_each(client, sent, 120, 8.0)
    finally:
        a.stop()
        if b is not None:
            b.stop()


async def test_the_broker_killed_and_restarted_under_traffic_loses_nothing_and_stops_no_worker(
    broker_kind: str, tmp_path: Path
) -> None:
    if broker_kind == "tansu":
        pytest.skip("the embedded Tansu keeps its log in memory: a restarted one starts empty")
    # A broker of its own, restarted on the same port and data directory.
    data = tmp_path / "broker"
    data.mkdir()
    broker = start_broker(broker_kind, data_dir=data)
    port = int(broker.bootstrap.rsplit(":", 1)[1])
    prefix, app_id = unique("bkill") + ".", unique("app")
    workers = [WorkerProcess(broker.bootstrap, prefix, app_id, tmp_path / f"w{i}").start() for i in range(2)]
    try:
        async with Client(broker.bootstrap, prefix) as client:
            await client.send("payments", "u0", payment("warm-up", "u0"))
            await client.read("risk-decisions", until=lambda rs: len(rs) >= 1, timeout=90)
        sent = ["warm-up"]
        for round_ in range(2):
            batch = [f"b{round_}-{i}" for i in range(1500)]
            sent += batch
            async with Client(broker.bootstrap, prefix) as client:
                await _send_payments(client, batch, 200)
            os.killpg(broker.pid, signal.SIGKILL)  # no shutdown: the log is as the crash left it
            broker.stop()  # reaps it
            broker = start_broker(broker_kind, port, data_dir=data)
        async with Client(broker.bootstrap, prefix) as client:
            try:
                decisions = await client.read(
                    "risk-decisions",
                    until=lambda rs: _all_running(workers) and {r["event_id"] for r in rs} >= set(sent),
                    timeout=180, settle=1.0, committed=True,
                )
            except TimeoutError as exc:
                report = await stuck_report(broker.bootstrap, prefix, app_id, workers)
                raise AssertionError(f"not every payment decided:\n{report}") from exc
        counts = _once_each(decisions, sent)  # nothing lost
        for w in workers:
            assert w.proc.poll() is None, f"a worker stopped on a broker restart:\n{w.log()}"
        # Nothing decided twice either: a worker taking partitions over just after the restart waits for
        # the offsets of transactions still being completed (require_stable) instead of starting below.
        assert max(counts.values()) == 1, f"repeated after a broker restart: {counts.most_common(3)}"
    finally:
        for w in workers:
            w.stop()
        broker.stop()
