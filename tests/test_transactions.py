"""transactions.py without a broker: the KIP-447 offset commit carries the group's generation, member id
and instance id (so the coordinator can refuse a zombie's), and a fenced answer aborts the transaction."""

from __future__ import annotations

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
