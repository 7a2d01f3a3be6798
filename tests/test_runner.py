"""The batch loop without Kafka: a fetched batch in, records produced, offsets committed at checkpoints;
batches from before a rebalance dropped; input read again after a crash decided again, identically."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import SimpleNamespace

import orjson
import pytest

from streamrisk.core.processor import Processor
from streamrisk.core.records import Message
from streamrisk.runtime import runner
from streamrisk.runtime.delivery import Delivery
from streamrisk.runtime.faust.app import FaustKV
from streamrisk.runtime.runner import BatchRunner, run_queue_wait_s
from streamrisk.settings import Settings
from streamrisk.web.metrics import WorkerMetrics, count
from tests.test_delivery import FakeCommit, FakeProducer, FakeTransactions

NOW = int(time.time() * 1000)
SETTINGS = Settings()
TP = ("payments", 0)


def payment(eid: str, user: str, offset: int, amount: float = 10.0) -> Message:
    value = {"event_id": eid, "ts": NOW - 1000, "user_id": user, "merchant_id": "m1", "amount": amount,
             "currency": "CNY", "method": "card", "device_id": "d1"}
    return Message("payments", 0, offset, user.encode(), orjson.dumps(value))


class Worker:
    """A runner as app.py wires it, over a dict table, a fake producer and a fake commit."""

    def __init__(self, table: dict[bytes, bytes] | None = None, transactions: object = None) -> None:
        # Faust's memory store keeps a dict, and the changelog partition of each key it recovered.
        store = SimpleNamespace(data={} if table is None else table, _key_partition={})
        self.kv = FaustKV(SimpleNamespace(data=store), SETTINGS.partitions)  # type: ignore[arg-type]
        self.kv.bind()
        self.processor = Processor(SETTINGS, self.kv)
        self.producer, self.commit = FakeProducer(), FakeCommit()
        self.producer.auto_ack = True
        self.current = True
        self.failures: list[BaseException] = []

        async def on_failure(exc: BaseException) -> None:
            self.failures.append(exc)

        delivery = Delivery(self.producer, self.commit, transactions=transactions)  # type: ignore[arg-type]
        if transactions is not None:
            self.kv.log.keep_undo()  # as app.py sets it up for exactly-once
        self.runner = BatchRunner(
            self.processor, delivery, "state-changelog", self.kv.take, lambda fetched: self.current,
            on_failure=on_failure, state=self.kv,
        )

    def sent(self, topic: str) -> list[dict]:
        return [orjson.loads(v) for t, _, v, _ in self.producer.sent if t == topic and v is not None]


async def test_a_batch_is_decided_and_its_offsets_committed_at_the_next_checkpoint() -> None:
    w = Worker()
    await w.runner.on_batch({TP: [payment("p1", "u1", 0), payment("p2", "u2", 1)]}, {}, fetched=1)
    assert [d["event_id"] for d in w.sent("risk-decisions")] == ["p1", "p2"]
    changelog = [(k, v) for t, k, v, _ in w.producer.sent if t == "state-changelog"]
    assert changelog and all(w.kv.data.get(k) == v for k, v in changelog)
    assert w.commit.commits == []  # nothing is committed before a checkpoint
    assert await w.runner.checkpoint() is True
    assert w.commit.commits == [{TP: 2}]


async def test_a_position_past_transaction_markers_is_committed_without_records() -> None:
    # A fetch can return only a commit marker (or aborted records): nothing to process, but the
    # committed offset must still reach the end of the partition.
    w = Worker()
    await w.runner.on_batch({TP: [payment("p1", "u1", 0)]}, {TP: 2}, fetched=1)
    await w.runner.on_batch({}, {TP: 4}, fetched=1)
    assert await w.runner.checkpoint() is True
    assert w.commit.commits == [{TP: 4}]


async def test_a_batch_fetched_before_a_rebalance_is_dropped_untouched() -> None:
    w = Worker()
    w.current = False
    assert await w.runner.on_batch({TP: [payment("p1", "u1", 0)]}, {}, fetched=1) is False
    assert w.producer.sent == [] and w.kv.data == {}
    assert w.runner.batches_dropped == 1
    assert await w.runner.checkpoint() is False


async def test_input_read_again_after_a_crash_gets_the_same_decisions_but_for_decided_at() -> None:
    # The state (changelog) of the first run was delivered, its offsets were not committed: the
    # restarted worker reads the same records again against state that already holds them.
    first = Worker()
    batch = [payment("p1", "u1", 0), payment("p2", "u1", 1, amount=5000.0)]
    await first.runner.on_batch({TP: batch}, {}, fetched=1)
    restarted = Worker(table=dict(first.kv.data))
    await restarted.runner.on_batch({TP: batch}, {}, fetched=2)

    def same(d: dict) -> dict:
        return {k: v for k, v in d.items() if k != "decided_at"}

    assert [same(d) for d in restarted.sent("risk-decisions")] == [
        same(d) for d in first.sent("risk-decisions")
    ]
    assert restarted.processor.counters.decisions_replayed == 2
    assert restarted.processor.counters.decisions == {}  # nothing was decided anew
    # A producer's retry of the same payment (another offset) has no second effect.
    await restarted.runner.on_batch({TP: [payment("p1", "u1", 2)]}, {}, fetched=2)
    assert len(restarted.sent("risk-decisions")) == 2


async def test_records_read_again_are_counted() -> None:
    w = Worker()
    await w.runner.on_batch({TP: [payment("p1", "u1", 0), payment("p2", "u1", 1)]}, {}, fetched=1)
    await w.runner.on_batch({TP: [payment("p2", "u1", 1), payment("p3", "u1", 2)]}, {}, fetched=1)
    assert w.runner.records_read_again == 1
    assert w.runner.stats()["records_read_again"] == 1


async def test_a_revoke_publishes_pending_summaries_commits_and_forgets_in_memory_state() -> None:
    w = Worker()
    merchant_event = Message(
        w.processor.t_merchant_events, 0, 0, b"m1", orjson.dumps(["pp1", 13, NOW - 1000, 1000, "m1"])
    )
    await w.runner.on_batch({TP: [payment("p1", "u1", 0)], ("merchant-events", 0): [merchant_event]}, {}, 1)
    assert w.sent(w.processor.t_merchant_risk) == []  # coalesced: published on the interval
    await w.runner.on_revoked({TP})
    assert len(w.sent(w.processor.t_merchant_risk)) == 1
    assert w.commit.commits == [{TP: 1, ("merchant-events", 0): 1}]
    assert w.processor.users.slots == {}


async def test_rebalances_count_revokes_but_not_the_last_checkpoint_at_shutdown() -> None:
    w = Worker()
    await w.runner.on_revoked(set())  # the first join revokes nothing
    await w.runner.on_revoked({TP})
    await w.runner.close()
    assert w.runner.stats()["rebalances"] == 2


def test_time_waiting_for_a_core_is_reported_and_grows_while_every_core_is_taken() -> None:
    me = threading.get_native_id()
    before = run_queue_wait_s(me)
    assert before is not None and before >= 0
    assert run_queue_wait_s(2**31 - 1) is None  # no such thread
    # Pinned to one core beside a busy process, this thread keeps waiting for its turn.
    core = min(os.sched_getaffinity(0))
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    saved = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(hog.pid, {core})
        os.sched_setaffinity(0, {core})
        deadline = time.monotonic() + 20
        while (run_queue_wait_s(me) or 0) - before < 0.05 and time.monotonic() < deadline:
            sum(range(10_000))  # runnable all the time: each slice the hog takes is waiting
        assert (run_queue_wait_s(me) or 0) - before >= 0.05
    finally:
        os.sched_setaffinity(0, saved)
        hog.kill()
        hog.wait()


async def test_exactly_once_commits_each_batch_in_its_own_transaction_before_the_next() -> None:
    txn = FakeTransactions(FakeProducer())
    w = Worker(transactions=txn)
    await w.runner.on_batch({TP: [payment("p1", "u1", 0)]}, {}, fetched=1)
    await w.runner.on_batch({TP: [payment("p2", "u2", 1)]}, {}, fetched=1)
    await w.runner.checkpoint()  # waits for the transaction in flight; nothing new to commit
    assert txn.log == ["begin", ("commit", {TP: 1}), "begin", ("commit", {TP: 2})]
    assert w.commit.commits == []  # offsets only ever in a transaction
    assert w.kv.log.open_transactions == 0


class GatedTransactions(FakeTransactions):
    """Commits only when the test opens the gate; `fail_commit` then makes it abort."""

    def __init__(self) -> None:
        super().__init__(FakeProducer())
        self.gate = asyncio.Event()

    async def commit(self) -> None:
        await self.gate.wait()
        self.gate.clear()
        await super().commit()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


@pytest.fixture
def pipelined(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch commits while the next is processed, as a backlog's large batches do."""
    monkeypatch.setattr(runner, "PIPELINED_BATCH", 1)


async def test_a_small_batch_commits_before_the_next_is_taken() -> None:
    txn = GatedTransactions()
    w = Worker(transactions=txn)
    first = asyncio.ensure_future(w.runner.on_batch({TP: [payment("p1", "u1", 0)]}, {}, fetched=1))
    await until(lambda: txn.log == ["begin"])
    assert not first.done()  # live traffic: the next batch takes all that arrives during the commit
    txn.gate.set()
    assert await first is True and txn.log == ["begin", ("commit", {TP: 1})]


@pytest.mark.usefixtures("pipelined")
async def test_the_next_batch_is_processed_while_the_last_commits_and_sent_only_after_it() -> None:
    txn = GatedTransactions()
    w = Worker(transactions=txn)
    assert await w.runner.on_batch({TP: [payment("p1", "u1", 0)]}, {}, fetched=1) is True
    assert txn.log == ["begin"]  # its transaction is committing
    second = asyncio.ensure_future(w.runner.on_batch({TP: [payment("p2", "u1", 1)]}, {}, fetched=1))
    await until(lambda: w.processor.counters.decisions.get("approve", 0) == 2)  # p2 decided already
    assert [d["event_id"] for d in w.sent("risk-decisions")] == ["p1"]  # but not sent: one transaction
    assert w.kv.log.open_transactions == 2
    txn.gate.set()
    assert await second is True
    assert [d["event_id"] for d in w.sent("risk-decisions")] == ["p1", "p2"]
    assert txn.log == ["begin", ("commit", {TP: 1}), "begin"]
    txn.gate.set()
    await w.runner.checkpoint()
    assert txn.log[-1] == ("commit", {TP: 2}) and w.kv.log.open_transactions == 0


@pytest.mark.usefixtures("pipelined")
async def test_an_aborted_transaction_undoes_its_state_and_the_next_batch_and_both_are_read_again() -> None:
    txn = GatedTransactions()
    w = Worker(transactions=txn)
    txn.gate.set()
    await w.runner.on_batch({TP: [payment("p1", "u1", 0)]}, {}, fetched=1)
    await w.runner.checkpoint()
    before = dict(w.kv.data)
    txn.fail_commit = True  # the broker went away: the next batch's transaction aborts
    batch = [payment("p2", "u1", 1, amount=900.0), payment("p3", "u2", 2)]
    assert await w.runner.on_batch({TP: batch}, {}, fetched=1) is True  # committing
    later = [payment("p4", "u1", 3, amount=40.0)]
    third = asyncio.ensure_future(w.runner.on_batch({TP: later}, {}, fetched=1))
    await until(lambda: w.kv.log.open_transactions == 2)  # processed on top of the aborting batch
    txn.gate.set()
    assert await third is False  # dropped: processed on top of state that is undone
    assert w.kv.data == before and w.failures == [] and w.runner.rewinds == 1
    assert w.runner.read_again  # the transport reads from the committed offsets again
    txn.fail_commit = False
    txn.gate.set()
    assert await w.runner.on_batch({TP: [*batch, *later]}, {}, fetched=2) is True
    await w.runner.checkpoint()
    clean = Worker(transactions=FakeTransactions(FakeProducer()))
    await clean.runner.on_batch({TP: [payment("p1", "u1", 0)]}, {}, fetched=1)
    await clean.runner.on_batch({TP: [*batch, *later]}, {}, fetched=1)
    await clean.runner.checkpoint()
    assert w.kv.data == clean.kv.data  # as if the aborted transaction never happened
    decided = [d["event_id"] for d in w.sent("risk-decisions")]
    assert decided == ["p1", "p2", "p3", "p2", "p3", "p4"]  # the aborted ones are invisible to read_committed
    assert txn.log[-1] == ("commit", {TP: 4})


@pytest.mark.usefixtures("pipelined")
async def test_a_transaction_that_aborts_with_no_batch_after_it_is_undone_at_once() -> None:
    txn = GatedTransactions()
    w = Worker(transactions=txn)
    txn.fail_commit = True
    assert await w.runner.on_batch({TP: [payment("p1", "u1", 0)]}, {}, fetched=1) is True
    assert w.kv.data
    txn.gate.set()
    await until(lambda: w.runner.read_again)  # no traffic needed to notice it
    assert w.kv.data == {} and w.runner.rewinds == 1 and w.failures == []


@pytest.mark.usefixtures("pipelined")
async def test_after_a_failed_checkpoint_the_worker_stops_and_takes_no_more_batches() -> None:
    txn = FakeTransactions(FakeProducer(), fail_commit=True, stuck=True)
    w = Worker(transactions=txn)
    await w.runner.on_batch({TP: [payment("p1", "u1", 0)]}, {}, fetched=1)
    await until(lambda: len(w.failures) == 1)  # its transaction neither committed nor aborted
    assert txn.log == ["begin"]
    sent = len(w.producer.sent)
    assert await w.runner.on_batch({TP: [payment("p2", "u2", 1)]}, {}, fetched=1) is False
    assert len(w.producer.sent) == sent and w.runner.batches_dropped == 1
    assert "not committed and not aborted" in w.runner.stats()["checkpoint_failure"]


async def test_observers_see_each_batch_with_its_processing_time_and_one_that_fails_costs_nothing() -> None:
    w = Worker()
    metrics = WorkerMetrics(w.processor)
    seen: list[tuple[list[str], float]] = []
    failed = []

    def broken(batch: object, seconds: float) -> None:
        failed.append(batch)
        raise RuntimeError("a metric's bug")

    w.runner.batch_observers.extend([broken, lambda batch, s: seen.append(([m.key for m in batch], s)),
                                     metrics.observe_batch])
    sent = NOW - 2000
    first = [payment("p1", "u1", 0)._replace(timestamp_ms=sent), payment("p2", "u2", 1)]
    assert await w.runner.on_batch({TP: first}, {}, fetched=1) is True
    assert await w.runner.on_batch({TP: [payment("p3", "u1", 2)]}, {}, fetched=1) is True
    assert [keys for keys, _ in seen] == [[b"u1", b"u2"], [b"u1"]]
    assert len(failed) == 1 and broken not in w.runner.batch_observers  # logged once, then told no more
    assert all(0 < s <= w.runner.busy_s for _, s in seen)
    # The failing observer cost the batches nothing: decided, and committed at the checkpoint.
    assert [d["event_id"] for d in w.sent("risk-decisions")] == ["p1", "p2", "p3"]
    assert await w.runner.checkpoint() is True and w.commit.commits == [{TP: 3}]
    assert count(metrics.batch_size) == 2 and count(metrics.latency) == 1  # p1 alone has a timestamp
    assert metrics.processed == {("payments", 0): 2}


async def test_a_batch_dropped_at_a_rebalance_is_not_observed() -> None:
    w = Worker()
    seen: list[object] = []
    w.runner.batch_observers.append(lambda batch, s: seen.append(batch))
    w.current = False
    assert await w.runner.on_batch({TP: [payment("p1", "u1", 0)]}, {}, fetched=1) is False
    assert seen == []

