"""transactions.py without a broker: the KIP-447 offset commit carries the group's generation, member id
and instance id (so the coordinator can refuse a zombie's), and a fenced answer aborts the transaction."""

from __future__ import annotations

import logging
from io import BytesIO
from types import SimpleNamespace

import pytest
from aiokafka.protocol.transaction import TxnOffsetCommitRequest
from aiokafka.structs import TopicPartition

from streamrisk.runtime.faust.stable_offsets import (
    StableOffsetFetchRequest,
    UnstableOffsetCommit,
    _fetch_stable_offsets,
)
from streamrisk.runtime.faust.transactions import (
    GroupMetadata,
    _FencedTxnOffsetCommitHandler,
    _FencedTxnOffsetCommitRequest,
    _PromptAddOffsetsHandler,
    _PromptAddPartitionsHandler,
    _PromptEndTxnHandler,
    _PromptProduceHandler,
    install_fencing,
    verification_retries,
)


def _request() -> TxnOffsetCommitRequest:
    return TxnOffsetCommitRequest("tx-w1", "app", 7, 2, [("payments", [(0, 42, ""), (3, 9, "")])])


def test_the_offset_commit_is_sent_as_v3_with_the_consumers_place_in_its_group() -> None:
    meta = GroupMetadata("app", 5, "member-1", "w1")
    struct = _FencedTxnOffsetCommitRequest(_request(), meta).prepare({28: (0, 4)})
    assert struct.API_VERSION == 3 and struct.FLEXIBLE_VERSION
    decoded = struct.SCHEMA.decode(BytesIO(struct.encode()))
    (tid, group, pid, epoch, generation, member, instance, topics, _tags) = decoded
    assert (tid, group, pid, epoch) == ("tx-w1", "app", 7, 2)
    assert (generation, member, instance) == (5, "member-1", "w1")
    [(topic, parts, _)] = topics
    assert topic == "payments"
    assert [(p, o) for p, o, *_ in parts] == [(0, 42), (3, 9)]


def test_a_worker_without_an_instance_id_sends_a_null_one() -> None:
    meta = GroupMetadata("app", 1, "m", None)
    struct = _FencedTxnOffsetCommitRequest(_request(), meta).prepare({28: (0, 3)})
    assert struct.SCHEMA.decode(BytesIO(struct.encode()))[6] is None


def test_an_offset_commit_the_coordinator_cannot_take_yet_is_asked_again_within_milliseconds() -> None:
    # COORDINATOR_NOT_AVAILABLE (15), as Apache Kafka 4 answers now and then in steady state.
    sender = SimpleNamespace(
        _retry_backoff=0.1, _coordinators={}, _txn_manager=None,
        _coordinator_dead=lambda kind: None,
    )
    handler = _FencedTxnOffsetCommitHandler(sender, {}, "app")
    resp = SimpleNamespace(API_VERSION=3, errors=[("payments", [(0, 15, {})], {})])
    backoff = handler.handle_response(resp)
    assert backoff is not None and backoff <= 0.005


def test_committed_offsets_are_asked_for_as_v7_with_require_stable() -> None:
    struct = StableOffsetFetchRequest("app", [("payments", [0, 3])]).prepare({9: (0, 9)})
    assert struct.API_VERSION == 7 and struct.FLEXIBLE_VERSION
    group, [(topic, parts, _)], require_stable, _tags = struct.SCHEMA.decode(BytesIO(struct.encode()))
    assert (group, topic, parts, require_stable) == ("app", "payments", [0, 3], True)


async def test_a_pending_transactional_offset_is_asked_for_again_not_read_as_committed() -> None:
    answers = [
        [("payments", [(0, -1, -1, "", 88, {}), (1, 7, -1, "", 0, {})], {})],  # p0 pending
        [("payments", [(0, 42, -1, "", 0, {}), (1, 7, -1, "", 0, {})], {})],
    ]
    sent: list = []

    async def send_req(request: object) -> object:
        sent.append(request)
        return SimpleNamespace(error_code=0, topics=answers[len(sent) - 1])

    coordinator = SimpleNamespace(group_id="app", _send_req=send_req, coordinator_dead=lambda: None)
    tps = [TopicPartition("payments", 0), TopicPartition("payments", 1)]
    with pytest.raises(UnstableOffsetCommit) as caught:
        await _fetch_stable_offsets(coordinator, tps)
    assert caught.value.retriable  # aiokafka's fetch_committed_offsets asks again after its backoff
    offsets = await _fetch_stable_offsets(coordinator, tps)
    assert {tp.partition: o.offset for tp, o in offsets.items()} == {0: 42, 1: 7}


# -- the coordinator busy with the last transaction is asked again within milliseconds, not 100 ms
CONCURRENT_TRANSACTIONS, NOT_ENOUGH_REPLICAS, NOT_LEADER = 51, 19, 6


def _sender(transactional_id: str | None = "tx-w1") -> SimpleNamespace:
    txn = SimpleNamespace(
        transactional_id=transactional_id, txn_partitions={TopicPartition("payments", 0)},
        consumer_group_added=lambda group: None, complete_transaction=lambda: None,
    )
    return SimpleNamespace(
        _retry_backoff=0.1, _coordinators={}, _txn_manager=txn,
        client=SimpleNamespace(force_metadata_update=lambda: None), _coordinator_dead=lambda kind: None,
    )


def test_partitions_added_while_the_last_transaction_ends_are_asked_again_within_milliseconds() -> None:
    # aiokafka shortens this retry only for a transaction's first partitions, not for later ones.
    handler = _PromptAddPartitionsHandler(_sender(), [TopicPartition("decisions", 1)])
    backoff = handler.handle_response(SimpleNamespace(errors=[("decisions", [(1, CONCURRENT_TRANSACTIONS)])]))
    assert backoff is not None and backoff <= 0.002


@pytest.mark.parametrize("handler_type", [_PromptAddOffsetsHandler, _PromptEndTxnHandler])
def test_offsets_and_commits_refused_as_concurrent_are_asked_again_within_milliseconds(
    handler_type: type,
) -> None:
    sender = _sender()
    handler = (
        handler_type(sender, "app") if handler_type is _PromptAddOffsetsHandler else handler_type(sender, 0)
    )
    backoff = handler.handle_response(SimpleNamespace(error_code=CONCURRENT_TRANSACTIONS))
    assert backoff is not None and backoff <= 0.002
    assert handler.handle_response(SimpleNamespace(error_code=0)) is None  # success stays success


class _Batch:
    def __init__(self, retries: int) -> None:
        self.retry_count = retries


def _produce_response(code: int) -> SimpleNamespace:
    # ProduceResponse v8: (partition, error, offset, timestamp, log start, record errors, message)
    return SimpleNamespace(API_VERSION=8, topics=[("decisions", [(0, code, -1, -1, -1, [], None)])])


def _produce_backoff(code: int, retries: int = 1, transactional_id: str | None = "tx-w1") -> float:
    batch = _Batch(retries)
    handler = _PromptProduceHandler(_sender(transactional_id), {TopicPartition("decisions", 0): batch})
    handler.handle_response(_produce_response(code))
    assert handler._to_reenqueue == [batch]  # retried, never failed
    return handler._default_backoff


def test_prompt_retries_are_counted_not_logged_and_other_retries_still_warn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_fencing()
    before = verification_retries()
    with caplog.at_level(logging.WARNING, logger="aiokafka.producer.sender"):
        _produce_backoff(NOT_ENOUGH_REPLICAS)
        assert verification_retries() == before + 1 and not caplog.records
        _produce_backoff(NOT_ENOUGH_REPLICAS, retries=11)  # lasting: aiokafka's warning stays
        assert verification_retries() == before + 1 and len(caplog.records) == 1


def test_a_transactional_produce_refused_while_the_coordinator_is_busy_is_retried_within_ms() -> None:
    # Apache Kafka's produce verification (KIP-890) answers old clients NOT_ENOUGH_REPLICAS for it.
    assert _produce_backoff(NOT_ENOUGH_REPLICAS) <= 0.005


def test_a_shortage_of_replicas_that_lasts_gets_the_full_backoff() -> None:
    assert _produce_backoff(NOT_ENOUGH_REPLICAS, retries=11) == 0.1
    assert _produce_backoff(NOT_LEADER) == 0.1  # other retriable errors: as aiokafka does
    assert _produce_backoff(NOT_ENOUGH_REPLICAS, transactional_id=None) == 0.1
