"""Exactly-once on Apache Kafka: a worker's outputs, changelog records and input offsets commit together.

One transactional producer per worker (KIP-98), one transaction per checkpoint (delivery.py): the
decisions, alerts, adjustments, dead letters, forwarded merchant events and changelog records a batch
produced, and the input offsets after it (`send_offsets_to_transaction`). A `read_committed` reader
sees all of a checkpoint or none of it; a worker that dies mid-transaction leaves nothing visible, and
its successor restores state from the committed changelog and reads the input from the committed
offsets, so every effect happens once.

Zombies. The transactional id is stable per worker (its group instance id, else its HTTP address):
a restarted worker's first `InitProducerId` aborts its predecessor's open transaction and fences it.
A worker paused past its session (its partitions moved) is fenced by the group coordinator (KIP-447):
its offsets are committed with its consumer generation and member id, which the coordinator refuses
once the group moved on, so the transaction aborts and nothing it wrote becomes visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka import errors as Errors
from aiokafka.client import AIOKafkaClient, CoordinationType
from aiokafka.producer import sender as aiokafka_sender
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.transaction import InitProducerIdRequest
from aiokafka.protocol.types import (
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Int64,
    Schema,
    TaggedFields,
)
from aiokafka.structs import TopicPartition

log = logging.getLogger(__name__)


class Fenced(RuntimeError):
    """This worker's partitions moved while it was away: its transaction must not commit."""


class GroupMetadata(NamedTuple):
    """The consumer's place in its group when offsets are committed (KIP-447's fencing)."""

    group_id: str
    generation_id: int
    member_id: str
    group_instance_id: str | None


async def transactions_unsupported(bootstrap: list[str], timeout_s: float = 10.0) -> str | None:
    """None if the broker runs transactions; otherwise why not, in one line.

    Asked of the broker itself (a transaction coordinator, then `InitProducerId`): some
    Kafka-compatible brokers list the API but answer it with an error. A broker that cannot be
    reached raises: that says nothing about transactions.
    """
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    deadline = time.monotonic() + timeout_s
    probe = f"streamrisk-probe-{uuid.uuid4().hex}"
    try:
        await client.bootstrap()
        while True:
            try:
                node = await client.coordinator_lookup(CoordinationType.TRANSACTION, probe)
                resp = await client.send(node, InitProducerIdRequest(probe, 1000))
                error: Exception | None = (
                    Errors.for_code(resp.error_code)() if resp.error_code else None
                )
            except Errors.KafkaError as exc:
                error = exc
            if error is None:
                return None
            # A new cluster creates its transaction log on first use: coordinators load a while.
            if not getattr(error, "retriable", False) or time.monotonic() > deadline:
                return f"InitProducerId: {type(error).__name__}"
            await asyncio.sleep(0.2)
    finally:
        await client.close()


class KafkaTransactions:
    """`delivery.Transactions` over the worker's transactional producer, which it starts, replaces
    and stops (`make` builds one, always with the same transactional id)."""

    def __init__(
        self, make: Callable[[], AIOKafkaProducer], group: Callable[[], GroupMetadata | None]
    ) -> None:
        self._make = make
        self._group = group
        self.producer: AIOKafkaProducer | None = None
        # Told of every producer started (the appender sends through the newest).
        self.on_producer: Callable[[AIOKafkaProducer], None] | None = None

    async def start(self, retry_for_s: float = 0.0) -> None:
        """Start a producer and initialise it (InitProducerId ends its predecessor's open transaction),
        trying again for `retry_for_s` while the broker cannot be reached."""
        deadline = time.monotonic() + retry_for_s
        while True:
            producer = self._make()
            try:
                await producer.start()
                await asyncio.wait_for(producer._txn_manager.wait_for_pid(), 30)
                break
            except Exception:
                with contextlib.suppress(Exception):
                    await producer.stop()
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)
        # The sender builds the offset commit of a transaction; ours carries the group metadata.
        producer._sender.streamrisk_group = self._group
        self.producer = producer
        if self.on_producer is not None:
            self.on_producer(producer)

    async def stop(self) -> None:
        if self.producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.producer.stop(), 5)

    async def reset(self) -> None:
        """A new producer with the same transactional id, for one that cannot go on (fenced by a
        transaction timeout while the broker was away); the broker may be restarting meanwhile."""
        await self.stop()
        await self.start(retry_for_s=60.0)

    @property
    def _producer(self) -> AIOKafkaProducer:
        if self.producer is None:
            raise RuntimeError("the transactional producer is not started")
        return self.producer

    async def begin(self) -> None:
        await self._producer.begin_transaction()

    async def add_offsets(self, offsets: Mapping[Any, int]) -> None:
        """Add `offsets` (next offset to read per partition) to the transaction, fenced by the group."""
        meta = self._group()
        if meta is None:
            raise Fenced("the consumer has left its group (its partitions moved): transaction aborted")
        tps = {TopicPartition(tp[0], tp[1]): offset for tp, offset in offsets.items()}
        await self._producer.send_offsets_to_transaction(tps, meta.group_id)

    async def commit(self) -> None:
        await self._producer.commit_transaction()

    async def abort(self) -> None:
        await self._producer.abort_transaction()


# -- KIP-447: TxnOffsetCommit v3 carries the consumer's generation, member id and instance id.
class _TxnOffsetCommitResponse_v3(Response):
    API_KEY = 28
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("errors", CompactArray(
            ("topic", CompactString("utf-8")),
            ("partition_errors", CompactArray(
                ("partition", Int32), ("error_code", Int16), ("tags", TaggedFields),
            )),
            ("tags", TaggedFields),
        )),
        ("tags", TaggedFields),
    )


class _TxnOffsetCommitRequest_v3(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 28
    API_VERSION = 3
    RESPONSE_TYPE = _TxnOffsetCommitResponse_v3
    SCHEMA = Schema(
        ("transactional_id", CompactString("utf-8")),
        ("group_id", CompactString("utf-8")),
        ("producer_id", Int64),
        ("producer_epoch", Int16),
        ("generation_id", Int32),
        ("member_id", CompactString("utf-8")),
        ("group_instance_id", CompactString("utf-8")),
        ("topics", CompactArray(
            ("topic", CompactString("utf-8")),
            ("partitions", CompactArray(
                ("partition", Int32),
                ("offset", Int64),
                ("leader_epoch", Int32),
                ("metadata", CompactString("utf-8")),
                ("tags", TaggedFields),
            )),
            ("tags", TaggedFields),
        )),
        ("tags", TaggedFields),
    )


class _FencedTxnOffsetCommitRequest(Request[_TxnOffsetCommitRequest_v3]):
    API_KEY = 28

    def __init__(self, base: Any, meta: GroupMetadata) -> None:
        self._base = base
        self._meta = meta

    def build(self, request_struct_class: type[_TxnOffsetCommitRequest_v3]) -> _TxnOffsetCommitRequest_v3:
        b, m = self._base, self._meta
        topics = [
            (topic, [(p, offset, -1, metadata, {}) for p, offset, metadata in parts], {})
            for topic, parts in b._topics
        ]
        return request_struct_class(
            b._transactional_id, b._group_id, b._producer_id, b._producer_epoch,
            m.generation_id, m.member_id, m.group_instance_id, topics, {},
        )


# Refused because the group moved on: this worker is a zombie for these partitions.
# (FENCED_INSTANCE_ID, 82, has no class in aiokafka: Errors.for_code gives UnknownError for it.)
_FENCED = (Errors.IllegalGenerationError, Errors.UnknownMemberIdError)
_FENCED_INSTANCE_ID = 82


class _FencedTxnOffsetCommitHandler(aiokafka_sender.TxnOffsetCommitHandler):
    """aiokafka's TxnOffsetCommit handler, sending v3 with the group metadata when the producer has it."""

    def create_request(self) -> Any:
        req = super().create_request()
        group = getattr(self._sender, "streamrisk_group", None)
        meta = group() if group is not None else None
        return req if meta is None else _FencedTxnOffsetCommitRequest(req, meta)

    def handle_response(self, resp: Any) -> Any:
        for _topic, partitions, *_ in resp.errors:
            for _partition, error_code, *_ in partitions:
                error_type = Errors.for_code(error_code)
                if error_type in _FENCED or error_code == _FENCED_INSTANCE_ID:
                    # Fatal for this transaction: it must abort, and this worker re-join.
                    exc = Fenced(
                        f"offsets refused by the group coordinator (error {error_code}): the "
                        "group moved on while this worker was away; its transaction is aborted"
                    )
                    self._sender._txn_manager.error_transaction(exc)
                    return None
        if resp.API_VERSION == 3:
            # The base handler unpacks (partition, error_code) pairs: drop the tagged fields.
            resp.errors = [(t, [(p, e) for p, e, *_ in parts]) for t, parts, *_ in resp.errors]
        backoff = super().handle_response(resp)
        # Asked again after the producer's retry backoff (100 ms) otherwise: Apache Kafka 4 answers a
        # few commits in a thousand with COORDINATOR_NOT_AVAILABLE or _LOAD_IN_PROGRESS in steady
        # state, and each cost a decision 100 ms.
        return backoff if backoff is None else min(backoff, _TXN_RETRY_BACKOFF_S)


# A transaction begun just after the previous one committed finds the broker still writing that one's
# markers (CONCURRENT_TRANSACTIONS, KAFKA-5477) and asks again after this long; aiokafka waits 20 ms
# for a transaction's first partitions, and its full retry backoff (100 ms) for the offsets' group and
# for partitions added later in the transaction: with one transaction per batch, that stalled a batch
# in tens of transactions a second by 100 ms (bench_pipeline --guarantees, the p99).
_CONCURRENT_TRANSACTIONS_BACKOFF_S = 0.002
_TXN_RETRY_BACKOFF_S = 0.005
_PROMPT_RETRY = {
    Errors.ConcurrentTransactions.errno: _CONCURRENT_TRANSACTIONS_BACKOFF_S,
    Errors.CoordinatorLoadInProgressError.errno: _TXN_RETRY_BACKOFF_S,
}


def _prompt(backoff: float | None, error_codes: Iterable[int]) -> float | None:
    """`backoff`, shortened when the coordinator only asked to be asked again shortly."""
    if backoff is None:
        return None
    return min([backoff, *(_PROMPT_RETRY[c] for c in error_codes if c in _PROMPT_RETRY)])


class _PromptAddPartitionsHandler(aiokafka_sender.AddPartitionsToTxnHandler):
    def handle_response(self, resp: Any) -> Any:
        codes = [code for _topic, parts in resp.errors for _p, code in parts]
        return _prompt(super().handle_response(resp), codes)


class _PromptAddOffsetsHandler(aiokafka_sender.AddOffsetsToTxnHandler):
    def handle_response(self, resp: Any) -> Any:
        return _prompt(super().handle_response(resp), [resp.error_code])


class _PromptEndTxnHandler(aiokafka_sender.EndTxnHandler):
    def handle_response(self, resp: Any) -> Any:
        return _prompt(super().handle_response(resp), [resp.error_code])


# Apache Kafka checks each transactional produce with the transaction coordinator (KIP-890 part 1), and
# answers a check the coordinator could not make yet (CONCURRENT_TRANSACTIONS while it writes another
# change of the transaction to its log, KAFKA-14904; a coordinator loading or moving) with
# NOT_ENOUGH_REPLICAS, the retriable error older clients know (KAFKA-15459). aiokafka adds partitions and
# offsets while earlier records are in flight, so this is routine, and it retried after 100 ms: on one
# broker, ~40 batches a minute stalled 100 ms at 1,000 payments/s. A batch's first retries now come
# after 5 ms; past them, the full backoff (a real shortage of in-sync replicas).
_NOT_ENOUGH_REPLICAS = Errors.NotEnoughReplicasError.errno
_PROMPT_PRODUCE_RETRIES = 10


class _PromptProduceHandler(aiokafka_sender.SendProduceReqHandler):
    def handle_response(self, response: Any) -> None:
        txn = self._sender._txn_manager
        prompt = False
        if txn is not None and txn.transactional_id is not None:
            # (partition, error code) of each partition refused: info is (partition, error_code, ...)
            refused = [
                (TopicPartition(topic, info[0]), info[1])
                for topic, parts in response.topics for info in parts if info[1]
            ]
            prompt = bool(refused) and all(
                code == _NOT_ENOUGH_REPLICAS and tp in self._batches
                and self._batches[tp].retry_count <= _PROMPT_PRODUCE_RETRIES
                for tp, code in refused
            )
        if not prompt:
            return super().handle_response(response)
        # aiokafka logs a warning per partition refused: tens a second here, for a routine wait.
        _quiet_retries.active = True
        try:
            super().handle_response(response)
        finally:
            _quiet_retries.active = False
        self._default_backoff = min(self._default_backoff, _TXN_RETRY_BACKOFF_S)


class _QuietRetries(logging.Filter):
    """Drops aiokafka's retry warnings for produce requests refused by the coordinator's verification
    (counted instead: `verification_retries`), and only while such a response is handled."""

    def __init__(self) -> None:
        super().__init__()
        self.active = False
        self.verification_retries = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if self.active:
            self.verification_retries += 1
            return False
        return True


_quiet_retries = _QuietRetries()


def verification_retries() -> int:
    """Transactional produce requests retried promptly after a verification refusal, so far."""
    return _quiet_retries.verification_retries


def install_fencing() -> None:
    """Make aiokafka's producers send KIP-447 offset commits, and ask the transaction coordinator again
    sooner when it is busy with the last transaction (all pinned in tests/test_runtime_pins.py)."""
    aiokafka_sender.TxnOffsetCommitHandler = _FencedTxnOffsetCommitHandler  # type: ignore[misc]
    aiokafka_sender.AddPartitionsToTxnHandler = _PromptAddPartitionsHandler  # type: ignore[misc]
    aiokafka_sender.AddOffsetsToTxnHandler = _PromptAddOffsetsHandler  # type: ignore[misc]
    aiokafka_sender.EndTxnHandler = _PromptEndTxnHandler  # type: ignore[misc]
    aiokafka_sender.SendProduceReqHandler = _PromptProduceHandler  # type: ignore[misc]
    sender_log = logging.getLogger(aiokafka_sender.__name__)
    if _quiet_retries not in sender_log.filters:
        sender_log.addFilter(_quiet_retries)
    aiokafka_sender.BACKOFF_OVERRIDE = _CONCURRENT_TRANSACTIONS_BACKOFF_S
