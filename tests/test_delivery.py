"""The delivery protocol without a broker: offsets are committed only after every record they cover is
acknowledged, failed records are sent again, and past the last attempt the worker is told to stop."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from streamrisk.runtime.delivery import CheckpointFailed, Delivery, DeliveryFailed, TransactionAborted

TP0, TP1 = ("payments", 0), ("payments", 1)


class FakeProducer:
    """Hands out delivery futures the test completes; `fail` makes the next N sends fail at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        self.futures: list[asyncio.Future] = []
        self.fail = 0
        self.auto_ack = False

    async def send(self, topic: str, key: Any, value: Any, partition: Any):
        fut = asyncio.get_running_loop().create_future()
        self.sent.append((topic, key, value, partition))
        self.futures.append(fut)
        if self.fail:
            self.fail -= 1
            fut.set_exception(ConnectionError("broker went away"))
        elif self.auto_ack:
            fut.set_result(None)
        return fut

    def ack_all(self) -> None:
        for f in self.futures:
            if not f.done():
                f.set_result(None)


class FakeCommit:
    def __init__(self, accept: bool = True) -> None:
        self.commits: list[dict[Any, int]] = []
        self.accept = accept

    async def __call__(self, offsets: Mapping[Any, int]) -> bool:
        self.commits.append(dict(offsets))
        return self.accept


async def test_offsets_are_committed_only_after_their_records_are_acknowledged() -> None:
    producer, commit = FakeProducer(), FakeCommit()
    delivery = Delivery(producer, commit)
    await delivery.send("risk-decisions", "u1", {"action": "approve"})
    delivery.processed(TP0, 42)
    task = asyncio.create_task(delivery.checkpoint())
    await asyncio.sleep(0.01)
    assert not task.done() and commit.commits == []  # the decision is not acknowledged yet
    producer.ack_all()
    assert await task is True
    assert commit.commits == [{TP0: 42}]
    assert producer.sent == [("risk-decisions", b"u1", b'{"action":"approve"}', None)]


async def test_records_sent_while_a_checkpoint_waits_belong_to_the_next_one() -> None:
    producer, commit = FakeProducer(), FakeCommit()
    delivery = Delivery(producer, commit)
    await delivery.send("risk-decisions", "u1", b"1")
    delivery.processed(TP0, 10)
    first = asyncio.create_task(delivery.checkpoint())
    await asyncio.sleep(0)
    await delivery.send("risk-decisions", "u2", b"2")  # a later batch, not yet acknowledged
    delivery.processed(TP0, 11)
    producer.futures[0].set_result(None)
    assert await first is True
    assert commit.commits == [{TP0: 10}]
    second = asyncio.create_task(delivery.checkpoint())
    await asyncio.sleep(0.01)
    assert not second.done()
    producer.ack_all()
    assert await second is True
    assert commit.commits == [{TP0: 10}, {TP0: 11}]


async def test_a_failed_record_is_sent_again_and_the_checkpoint_then_commits() -> None:
    producer, commit = FakeProducer(), FakeCommit()
    producer.auto_ack = True
    delivery = Delivery(producer, commit, backoff_s=0.001)
    producer.fail = 2  # the record, then its first re-send, fail
    await delivery.send("fraud-alerts", "u1", b"alert")
    delivery.processed(TP1, 7)
    assert await delivery.checkpoint() is True
    assert [s[2] for s in producer.sent] == [b"alert"] * 3
    assert delivery.stats.resends == 2
    assert commit.commits == [{TP1: 7}]


async def test_past_the_last_attempt_the_checkpoint_raises_and_commits_nothing() -> None:
    producer, commit = FakeProducer(), FakeCommit()
    delivery = Delivery(producer, commit, max_attempts=3, backoff_s=0.001)
    producer.fail = 3
    await delivery.send("risk-decisions", "u1", b"d")
    delivery.processed(TP0, 5)
    with pytest.raises(DeliveryFailed, match="after 3 attempts"):
        await delivery.checkpoint()
    assert commit.commits == []


async def test_a_record_never_answered_fails_its_attempt_at_the_deadline() -> None:
    # A broker that takes a record and then stalls leaves its acknowledgement pending for ever:
    # each attempt ends at its deadline, and past the last one the worker is told to stop.
    producer, commit = FakeProducer(), FakeCommit()
    delivery = Delivery(producer, commit, max_attempts=2, backoff_s=0.001, attempt_timeout_s=0.05)
    await delivery.send("risk-decisions", "u1", b"d")
    delivery.processed(TP0, 5)
    with pytest.raises(DeliveryFailed, match=r"after 2 attempts.*no acknowledgement"):
        await asyncio.wait_for(delivery.checkpoint(), 5)
    assert [s[2] for s in producer.sent] == [b"d", b"d"]
    assert commit.commits == []
    producer.futures[0].set_exception(ConnectionError("late"))  # a late answer is nobody's business


async def test_a_record_answered_after_the_deadline_is_sent_again_and_then_committed() -> None:
    producer, commit = FakeProducer(), FakeCommit()
    delivery = Delivery(producer, commit, backoff_s=0.001, attempt_timeout_s=0.05)
    await delivery.send("risk-decisions", "u1", b"d")
    delivery.processed(TP0, 5)
    producer.auto_ack = True  # the re-send is acknowledged at once
    assert await asyncio.wait_for(delivery.checkpoint(), 5) is True
    assert delivery.stats.resends == 1
    assert commit.commits == [{TP0: 5}]


async def test_an_unchanged_offset_is_not_committed_again_and_offsets_never_go_back() -> None:
    producer, commit = FakeProducer(), FakeCommit()
    producer.auto_ack = True
    delivery = Delivery(producer, commit)
    delivery.processed(TP0, 5)
    assert await delivery.checkpoint() is True
    delivery.processed(TP0, 5)
    assert await delivery.checkpoint() is False
    # Read again below the committed offset (a seek raced a commit in flight): not committed back.
    delivery.processed(TP0, 4)
    assert await delivery.checkpoint() is False
    assert commit.commits == [{TP0: 5}]
    assert delivery.stats.behind_committed == 1


async def test_after_a_revoke_a_partition_may_start_over_from_a_lower_offset() -> None:
    producer, commit = FakeProducer(), FakeCommit()
    delivery = Delivery(producer, commit)
    delivery.processed(TP0, 50)
    await delivery.checkpoint()
    delivery.forget({TP0})  # another worker owned it meanwhile and committed less
    delivery.processed(TP0, 30)
    assert await delivery.checkpoint() is True
    assert commit.commits[-1] == {TP0: 30}


async def test_a_refused_commit_is_counted_not_fatal() -> None:
    producer, commit = FakeProducer(), FakeCommit(accept=False)
    delivery = Delivery(producer, commit)
    delivery.processed(TP0, 3)
    assert await delivery.checkpoint() is False
    assert delivery.stats.commits_refused == 1


# -- a failed checkpoint is final (nothing after it is committed, whoever asks)


async def test_after_a_failed_checkpoint_no_later_checkpoint_commits_anything() -> None:
    producer, commit = FakeProducer(), FakeCommit()
    delivery = Delivery(producer, commit, max_attempts=1)
    producer.fail = 1
    await delivery.send("dead-letters", "k", b"too large")
    delivery.processed(TP0, 5)
    with pytest.raises(DeliveryFailed):
        await delivery.checkpoint()
    # The next epoch's records are all acknowledged: committing its offsets would skip offset < 5.
    producer.auto_ack = True
    await delivery.send("risk-decisions", "u2", b"2")
    delivery.processed(TP0, 9)
    for _ in range(2):  # the interval checkpoint, then the one at shutdown
        with pytest.raises(CheckpointFailed, match="an earlier checkpoint failed"):
            await delivery.checkpoint()
    assert commit.commits == []
    assert delivery.failure is not None and "not delivered" in delivery.failure
    assert "\n" not in delivery.failure  # one line, for the log and /health


async def test_a_cancelled_checkpoint_is_final_too() -> None:
    producer, commit = FakeProducer(), FakeCommit()
    delivery = Delivery(producer, commit)
    await delivery.send("risk-decisions", "u1", b"1")
    delivery.processed(TP0, 3)
    task = asyncio.create_task(delivery.checkpoint())
    await asyncio.sleep(0.01)
    task.cancel()  # shutdown cancelled it while its records were unacknowledged
    with pytest.raises(asyncio.CancelledError):
        await task
    producer.ack_all()
    producer.auto_ack = True
    delivery.processed(TP0, 7)
    with pytest.raises(CheckpointFailed):
        await delivery.checkpoint()
    assert commit.commits == []


async def test_a_changelog_record_sent_again_carries_its_keys_current_value() -> None:
    producer, commit = FakeProducer(), FakeCommit()
    current = {b"u1": b"v3"}

    def refresh(topic: str, key: bytes | None, value: bytes | None) -> bytes | None:
        return current.get(key) if topic == "changelog" and key is not None else value

    delivery = Delivery(producer, commit, backoff_s=0, refresh=refresh)
    producer.fail = 1
    await delivery.send("changelog", b"u1", b"v1", 0)  # fails
    producer.auto_ack = True
    await delivery.send("changelog", b"u1", b"v2", 0)  # a newer value, delivered
    await delivery.send("risk-decisions", b"p1", b"d", None)
    delivery.processed(TP0, 2)
    assert await delivery.checkpoint() is True
    # Sent again at the tail with the newest value, never the stale v1 after v2.
    assert producer.sent[-1] == ("changelog", b"u1", b"v3", 0)
    assert [s[2] for s in producer.sent if s[0] == "changelog"] == [b"v1", b"v2", b"v3"]


# -- exactly-once: one transaction per checkpoint


class FakeTransactions:
    def __init__(self, producer: FakeProducer, fail_commit: bool = False, stuck: bool = False) -> None:
        self.producer = producer
        self.log: list[Any] = []
        self.fail_commit = fail_commit
        self.stuck = stuck  # neither abort nor a new producer works
        self.offsets: dict[Any, int] = {}

    async def begin(self) -> None:
        self.log.append("begin")

    async def add_offsets(self, offsets: Mapping[Any, int]) -> None:
        self.offsets = dict(offsets)

    async def commit(self) -> None:
        if self.fail_commit:
            raise ConnectionError("coordinator went away")
        self.log.append(("commit", self.offsets))
        self.offsets = {}

    async def abort(self) -> None:
        if self.stuck:
            raise ConnectionError("no coordinator")
        self.log.append("abort")

    async def reset(self) -> None:
        if self.stuck:
            raise ConnectionError("no coordinator")
        self.log.append("reset")


def _exactly_once(
    max_attempts: int = 5, commit: FakeCommit | None = None, **faults: bool
) -> tuple[FakeProducer, FakeTransactions, Delivery]:
    """A delivery under exactly-once over fakes whose records are acknowledged at once."""
    producer = FakeProducer()
    producer.auto_ack = True
    txn = FakeTransactions(producer, **faults)
    delivery = Delivery(producer, commit or FakeCommit(), transactions=txn, max_attempts=max_attempts)
    return producer, txn, delivery


async def _the_input_read_again_commits(delivery: Delivery, txn: FakeTransactions) -> None:
    """After an abort the input is read again (runner.py): its records are one new transaction."""
    await delivery.send("risk-decisions", "u1", b"1")
    delivery.processed(TP0, 4)
    assert await delivery.checkpoint() is True
    assert txn.log == ["begin", "abort", "begin", ("commit", {TP0: 4})]


async def test_exactly_once_commits_records_and_offsets_in_one_transaction() -> None:
    commit = FakeCommit()
    _, txn, delivery = _exactly_once(commit=commit)
    await delivery.send("risk-decisions", "u1", b"1")
    await delivery.send("changelog", "u1", b"s", 0)
    delivery.processed(TP0, 4)
    assert await delivery.checkpoint() is True
    await delivery.send("risk-decisions", "u2", b"2")
    delivery.processed(TP1, 8)
    assert await delivery.checkpoint() is True
    assert txn.log == ["begin", ("commit", {TP0: 4}), "begin", ("commit", {TP1: 8})]
    assert commit.commits == []  # never through the consumer


async def test_exactly_once_commits_offsets_alone_past_transaction_markers() -> None:
    _, txn, delivery = _exactly_once()
    delivery.processed(TP0, 12)  # nothing produced: only markers were read
    assert await delivery.checkpoint() is True
    assert await delivery.checkpoint() is False  # nothing new: no empty transaction
    assert txn.log == ["begin", ("commit", {TP0: 12})]


async def test_a_transaction_that_fails_to_commit_is_aborted_and_the_next_one_commits() -> None:
    _, txn, delivery = _exactly_once(fail_commit=True)
    await delivery.send("risk-decisions", "u1", b"1")
    delivery.processed(TP0, 4)
    with pytest.raises(TransactionAborted, match="input read again from the committed offsets"):
        await delivery.checkpoint()
    assert txn.log == ["begin", "abort"] and delivery.failure is None
    txn.fail_commit = False
    await _the_input_read_again_commits(delivery, txn)


async def test_transactions_that_keep_aborting_are_final() -> None:
    _, _, delivery = _exactly_once(fail_commit=True, max_attempts=2)
    for _ in range(3):
        await delivery.send("risk-decisions", "u1", b"1")
        delivery.processed(TP0, 4)
        with pytest.raises(TransactionAborted):
            await delivery.checkpoint()
    assert delivery.failure is not None and "3 transactions aborted in a row" in delivery.failure
    with pytest.raises(CheckpointFailed):
        await delivery.checkpoint()


async def test_checkpoints_with_nothing_to_commit_between_aborts_do_not_reset_the_count() -> None:
    # A worker whose consumer has lost its group for good aborts every batch; the interval checkpoints
    # between them have nothing to commit. Seen in a chaos run: 119 aborts over 3 minutes, never final.
    _, _, delivery = _exactly_once(fail_commit=True, max_attempts=2)
    for i in range(3):
        if i:
            assert await delivery.checkpoint() is False  # the interval checkpoint: an empty epoch
        await delivery.send("risk-decisions", "u1", b"1")
        delivery.processed(TP0, 4)
        with pytest.raises(TransactionAborted):
            await delivery.checkpoint()
    assert delivery.failure is not None and "3 transactions aborted in a row" in delivery.failure


async def test_a_transaction_that_can_neither_commit_nor_abort_is_final() -> None:
    _, _, delivery = _exactly_once(fail_commit=True, stuck=True)
    await delivery.send("risk-decisions", "u1", b"1")
    delivery.processed(TP0, 4)
    with pytest.raises(DeliveryFailed, match="not committed and not aborted"):
        await delivery.checkpoint()
    delivery.processed(TP0, 6)
    with pytest.raises(CheckpointFailed):
        await delivery.checkpoint()


async def test_a_transaction_with_a_record_that_failed_is_aborted_never_committed() -> None:
    # aiokafka would commit it: a batch refused for good (too large) does not fail the transaction.
    producer, txn, delivery = _exactly_once()
    await delivery.send("risk-decisions", "u1", b"1")
    producer.fail = 1
    await delivery.send("risk-decisions", "u2", b"2")
    delivery.processed(TP0, 2)
    with pytest.raises(TransactionAborted, match="not delivered"):
        await delivery.checkpoint()
    assert txn.log == ["begin", "abort"]




INPUT = ("payments", 0)


async def test_offsets_known_before_a_transactions_first_record_join_it_before_that_record() -> None:
    # Apache Kafka refuses a transactional produce while the coordinator adds the offsets' group to the
    # same transaction (KIP-890 verification): offsets added first leave nothing to collide with.
    producer, txn, delivery = _exactly_once()
    order: list[Any] = []
    add = txn.add_offsets

    async def add_offsets(offsets: Mapping[Any, int]) -> None:
        order.append(("offsets", dict(offsets), len(producer.sent)))
        await add(offsets)

    txn.add_offsets = add_offsets  # type: ignore[method-assign]
    delivery.processed(INPUT, 3)
    await delivery.send("risk-decisions", "p1", {"event_id": "p1"})
    assert order == [("offsets", {INPUT: 3}, 0)]  # before the record was handed to the producer
    assert await delivery.checkpoint() is True
    assert txn.log == ["begin", ("commit", {INPUT: 3})] and len(order) == 1  # not added twice

    # Offsets that moved after the first record (past transaction markers) are added at the commit.
    delivery.processed(INPUT, 5)
    await delivery.send("risk-decisions", "p2", {"event_id": "p2"})
    delivery.processed(INPUT, 7)
    assert await delivery.checkpoint() is True
    assert txn.log[-1] == ("commit", {INPUT: 7}) and order[-1][1] == {INPUT: 7}


async def test_offsets_refused_before_the_first_record_abort_the_transaction_at_its_commit() -> None:
    _, txn, delivery = _exactly_once()

    async def fenced(offsets: Mapping[Any, int]) -> None:
        raise RuntimeError("the group moved on")

    txn.add_offsets = fenced  # type: ignore[method-assign]
    delivery.processed(INPUT, 3)
    await delivery.send("risk-decisions", "p1", {"event_id": "p1"})  # the send itself does not fail
    with pytest.raises(TransactionAborted, match="the group moved on"):
        await delivery.checkpoint()
    assert txn.log == ["begin", "abort"]
