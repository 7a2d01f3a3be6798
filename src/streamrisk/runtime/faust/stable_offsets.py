"""Committed offsets read as KIP-447 says a transactional reader must: stable ones only.

A transaction's offsets are pending at the group coordinator until its markers are written. aiokafka
asks for committed offsets with OffsetFetch v1-v3, which answer the last committed value even while
a newer one is pending: a worker taking partitions over right after a broker restart (markers still
being written) starts below offsets that then commit, and decides that input a second time. OffsetFetch
v7 with `require_stable` answers UNSTABLE_OFFSET_COMMIT instead until the pending offsets settle; the
consumer asks again after its retry backoff. A broker without v7 gets aiokafka's own request.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

from aiokafka import errors as Errors
from aiokafka.consumer import group_coordinator
from aiokafka.errors import IncompatibleBrokerVersion
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)
from aiokafka.structs import OffsetAndMetadata, TopicPartition

log = logging.getLogger(__name__)

_UNSTABLE_OFFSET_COMMIT = 88  # no class in aiokafka's errors


class UnstableOffsetCommit(Errors.KafkaError):
    """A transaction's offsets for the partition are pending: ask again shortly."""

    errno = _UNSTABLE_OFFSET_COMMIT
    retriable = True


class _OffsetFetchResponse_v7(Response):
    API_KEY = 9
    API_VERSION = 7
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("topics", CompactArray(
            ("topic", CompactString("utf-8")),
            ("partitions", CompactArray(
                ("partition", Int32),
                ("offset", Int64),
                ("leader_epoch", Int32),
                ("metadata", CompactString("utf-8")),
                ("error_code", Int16),
                ("tags", TaggedFields),
            )),
            ("tags", TaggedFields),
        )),
        ("error_code", Int16),
        ("tags", TaggedFields),
    )


class _OffsetFetchRequest_v7(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 9
    API_VERSION = 7
    RESPONSE_TYPE = _OffsetFetchResponse_v7
    SCHEMA = Schema(
        ("group_id", CompactString("utf-8")),
        ("topics", CompactArray(
            ("topic", CompactString("utf-8")),
            ("partitions", CompactArray(Int32)),
            ("tags", TaggedFields),
        )),
        ("require_stable", Boolean),
        ("tags", TaggedFields),
    )


class StableOffsetFetchRequest(Request[_OffsetFetchRequest_v7]):
    API_KEY = 9

    def __init__(self, group_id: str, partitions: list[tuple[str, list[int]]]) -> None:
        self._group_id = group_id
        self._partitions = partitions

    def build(self, request_struct_class: type[_OffsetFetchRequest_v7]) -> _OffsetFetchRequest_v7:
        topics = [(topic, parts, {}) for topic, parts in self._partitions]
        return request_struct_class(self._group_id, topics, True, {})


_aiokafka_fetch = group_coordinator.GroupCoordinator._do_fetch_commit_offsets


async def _fetch_stable_offsets(self: Any, partitions: list[TopicPartition]) -> dict:
    """GroupCoordinator._do_fetch_commit_offsets, asking for stable offsets where the broker can."""
    by_topic: dict[str, list[int]] = collections.defaultdict(list)
    for tp in partitions:
        by_topic[tp.topic].append(tp.partition)
    try:
        response = await self._send_req(StableOffsetFetchRequest(self.group_id, list(by_topic.items())))
    except IncompatibleBrokerVersion:
        return await _aiokafka_fetch(self, partitions)
    if response.error_code:
        error_type = Errors.for_code(response.error_code)
        if error_type is Errors.NotCoordinatorForGroupError:
            self.coordinator_dead()
        raise error_type()
    offsets = {}
    for topic, topic_partitions, _ in response.topics:
        for partition, offset, _epoch, metadata, error_code, _ in topic_partitions:
            if error_code == _UNSTABLE_OFFSET_COMMIT:
                log.info("offsets of %s-%d pending in a transaction: asking again", topic, partition)
                raise UnstableOffsetCommit()
            if error_code:
                error_type = Errors.for_code(error_code)
                if error_type is Errors.NotCoordinatorForGroupError:
                    self.coordinator_dead()
                if error_type is Errors.UnknownTopicOrPartitionError:
                    continue
                raise error_type()
            if offset != group_coordinator.UNKNOWN_OFFSET:
                offsets[TopicPartition(topic, partition)] = OffsetAndMetadata(offset, metadata or "")
    return offsets


def install_stable_offsets() -> None:
    """Make aiokafka's consumers fetch committed offsets with require_stable (pinned in
    tests/test_runtime_pins.py)."""
    group_coordinator.GroupCoordinator._do_fetch_commit_offsets = _fetch_stable_offsets  # type: ignore[method-assign]
