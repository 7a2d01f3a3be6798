"""The faust-streaming and aiokafka internals the worker relies on, checked by name.

The runtime bypasses Faust's per-event streams (runtime/faust/transport.py) and commits offsets itself
(runtime/delivery.py), so it reaches past both libraries' public APIs. The versions are pinned in
constraints.txt; an upgrade that renames or drops one of these fails here, naming it, instead of
silently changing the runtime. The modules named below are those of src/streamrisk/runtime/faust/, the
one package that touches these internals (tests/test_architecture.py keeps the core free of them).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import aiokafka
import faust
import pytest
from aiokafka.client import AIOKafkaClient
from aiokafka.cluster import ClusterMetadata
from aiokafka.conn import AIOKafkaConnection
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.consumer.subscription_state import Assignment, SubscriptionState, TopicPartitionState
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer import sender as aiokafka_sender
from aiokafka.producer.message_accumulator import MessageAccumulator, MessageBatch
from aiokafka.producer.transaction_manager import TransactionManager
from faust.stores.memory import Store as MemoryStore
from faust.tables import TableManager
from faust.tables.recovery import Recovery
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode import Service
from mode.threads import QueueServiceThread, ServiceThread

ROOT = Path(__file__).resolve().parents[1]

# (owner, attribute, what we use it for)
ATTRIBUTES = [
    (faust_consumer.Consumer, "_drain_messages", "overridden: the fetch loop that hands batches over"),
    (faust_consumer.Consumer, "_wait_next_records", "one fetch: (records by partition, active partitions)"),
    (faust_consumer.Consumer, "perform_seek", "records fetched while the flow is stopped are read again"),
    (faust_consumer.Consumer, "flow_active", "False while a rebalance is under way"),
    (faust_consumer.Consumer, "_to_message", "changelog records keep Faust's per-record path"),
    (faust_consumer.Consumer, "consumer_stopped_errors", "a stopping consumer is not a crash"),
    (faust_aiokafka.Consumer, "verify_event_path", "skipped for partitions with no fetch position yet"),
    (faust_consumer.ThreadDelegateConsumer, "_commit", "commits our checkpoint's offsets"),
    (faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer", "fetch wait, isolation level"),
    (faust_aiokafka.AIOKafkaConsumerThread, "_highwaters", "end offsets confirmed for recovery"),
    (SubscriptionState, "subscription", "the subscription whose assignment holds the positions"),
    (Assignment, "state_value", "a partition's fetch state"),
    (TopicPartitionState, "has_valid_position", "no position before the first seek"),
    (TopicPartitionState, "position", "the next offset to read, past transaction markers"),
    (faust.App, "on_first_start", "subscribes the input topics on the worker's loop"),
    (faust.App, "on_before_shutdown", "the last checkpoint"),
    (faust.App, "on_partitions_revoked", "the checkpoint before a rebalance completes"),
    (faust.App, "consumer_generation_id", "a batch from an older generation is dropped"),
    (faust.App, "crash", "a failure we cannot handle stops the worker"),
    (faust.App, "tables", "recovery.completed: input is taken only once recovery has sought it"),
    (TableManager, "_update_channels", "app.py: registers the changelogs without Faust's 1 s start sleep"),
    (TableManager, "changelog_queue", "restore.py: records queued for recovery are applied first"),
    (Recovery, "in_recovery", "restore.py: bulk only while recovering"),
    (Recovery, "flush_buffers", "restore.py: records the recovery loop buffered go first"),
    (GroupCoordinator, "_maybe_leave_group", "static_member.py: replaced to leave as a static member"),
    (GroupCoordinator, "_send_req", "static_member.py: sends LeaveGroup v3"),
    (GroupCoordinator, "reset_generation", "static_member.py: as aiokafka's own leave does"),
    (faust_aiokafka.Producer, "_ensure_producer", "appender.py: the aiokafka producer under Faust's"),
    (MessageAccumulator, "add_message", "appender.py: records go straight to the accumulator"),
    (AIOKafkaClient, "_wait_on_metadata", "appender.py: a topic's partitions before its first record"),
    (Service, "_default_stop_children", "in_loop.py: the stopping steps ServiceThread leaves to its thread"),
    (Service, "_default_stop_futures", "in_loop.py"),
    (Service, "_default_stop_exit_stacks", "in_loop.py"),
    (ServiceThread, "wait_for_shutdown", "in_loop.py: no thread sets the shutdown event"),
    (QueueServiceThread, "call_thread", "in_loop.py: every call into the consumer goes through it"),
    (QueueServiceThread, "cast_thread", "in_loop.py"),
    (faust_aiokafka.AIOKafkaConsumerThread, "on_thread_stop", "in_loop.py: stops aiokafka's consumer"),
    (faust_aiokafka.AIOKafkaConsumerThread, "_consumer", "app.py: the group generation of a transaction"),
    (TableManager, "_recovery", "app.py: our recovery, done once the position passes the end"),
    (Recovery, "active_remaining", "app.py: overridden, position past transaction markers"),
    (aiokafka_sender, "TxnOffsetCommitHandler", "transactions.py: replaced by the fenced handler"),
    (aiokafka_sender, "BACKOFF_OVERRIDE", "transactions.py: the CONCURRENT_TRANSACTIONS retry, shortened"),
    (aiokafka_sender.TxnOffsetCommitHandler, "create_request", "transactions.py: wrapped to send v3"),
    (aiokafka_sender.TxnOffsetCommitHandler, "handle_response", "transactions.py: fenced errors abort"),
    (aiokafka_sender, "AddPartitionsToTxnHandler", "transactions.py: replaced, prompt retry"),
    (aiokafka_sender, "AddOffsetsToTxnHandler", "transactions.py: replaced, prompt retry"),
    (aiokafka_sender, "EndTxnHandler", "transactions.py: replaced, prompt retry"),
    (aiokafka_sender, "SendProduceReqHandler", "transactions.py: replaced, prompt retry of a verification"),
    (MessageBatch, "retry_count", "transactions.py: only a batch's first retries come sooner"),
    (TransactionManager, "error_transaction", "transactions.py: a fenced commit makes the txn abortable"),
    (TransactionManager, "wait_for_pid", "app.py: InitProducerId before recovery"),
]

SOURCES = [
    # (function, text it must contain, why)
    (aiokafka.AIOKafkaConsumer.__init__, "self._subscription = SubscriptionState", "fetch positions"),
    (faust_consumer.Consumer._wait_next_records, "self.can_resume_flow", "awaited while the flow stops"),
    (faust_consumer.Consumer.verify_all_partitions_active, "self.verify_event_path(now, tp)",
     "the livelock check goes through our verify_event_path"),
    (faust_consumer.Fetcher._fetcher.fun, "_drain_messages", "Faust's fetcher runs our fetch loop"),
    (aiokafka.AIOKafkaConsumer.start, "self._fetch_max_wait_ms", "our fetch wait reaches the fetcher"),
    (aiokafka.AIOKafkaConsumer.start, "self._isolation_level", "read_committed reaches the fetcher"),
    (aiokafka.AIOKafkaConsumer.start, "self._fetch_min_bytes", "our fetch size reaches the fetcher"),
    (faust.App._on_partitions_revoked, "self.on_partitions_revoked.send", "revoke signal is awaited"),
    (faust.App.on_stop, "on_before_shutdown.send", "shutdown signal comes before the producer stops"),
    (Recovery.on_recovery_completed, "self.completed.set()", "set after the seek"),
    (TableManager.on_start, "await self.recovery.start()", "app.py's table manager starts as Faust's does"),
    (Recovery.__init__, "self.active_tps = set()", "restore.py: bulk only for active partitions"),
    (Recovery.__init__, "self.tp_to_table = {}", "restore.py: the table of a changelog partition"),
    (Recovery.__init__, "self.active_offsets = Counter()", "restore.py: moved past what it applied"),
    (Recovery._slurp_changelogs.fun, "if seen_offset is None or offset > seen_offset:",
     "restore.py: the last record, already applied, is skipped by the recovery loop"),
    (Recovery._slurp_changelogs.fun, "await _maybe_signal_recovery_end()", "restore.py: and ends recovery"),
    (MemoryStore._create_batch_iterator, "self._key_partition[key] = event.message.partition",
     "restore.py writes the store as its apply_changelog_batch does"),
    (faust.Table.on_changelog_event, "if self._on_changelog_event:", "restore.py: no per-event hook"),
    (aiokafka.AIOKafkaConsumer.start, "group_instance_id=self._group_instance_id", "static membership"),
    (GroupCoordinator.close, "await self._maybe_leave_group()", "static_member.py: leaves on stop"),
    (faust.Worker._setup_spinner_handler, "if self.spinner:", "no spinner: root keeps its level"),
    (aiokafka.AIOKafkaProducer.__init__, "self._message_accumulator = MessageAccumulator(", "appender.py"),
    (aiokafka.AIOKafkaProducer.__init__, "self._request_timeout_ms = request_timeout_ms", "appender.py"),
    (ClusterMetadata.__init__, "self._partitions", "appender.py: partitions per topic, by number"),
    (ClusterMetadata.update_metadata, "self._partitions = _new_partitions",
     "appender.py reads it through the cluster: a refresh replaces the dict"),
    (MessageAccumulator._append_batch, "maybe_add_partition_to_txn", "appended records join a transaction"),
    (MessageAccumulator.add_message, "pending_batches = self._batches.get(tp)", "appender.py: open batch"),
    (MessageBatch.append, "timestamp=timestamp_ms, key=key, value=value, headers=headers",
     "appender.py appends to the open batch's builder, as MessageBatch.append does"),
    (MessageAccumulator.add_message, "if self._exception is not None:", "appender.py checks it too"),
    (MessageBatch.done, "self.future.set_result(", "appender.py: a batch's future is its records' ack"),
    (MessageBatch.failure, "self.future.set_exception(", "appender.py: a failed batch fails its records"),
    (DefaultPartitioner.__call__, "murmur2(key)", "appender.py partitions keys as the producer would"),
    (MemoryStore.__post_init__, "self.data: MutableMapping = {}", "FaustKV reads the store's dict"),
    (MemoryStore.apply_changelog_batch, "self.data.update(", "recovery fills that same dict"),
    (ServiceThread.__init__, "self.thread_loop = thread_loop or asyncio.new_event_loop()",
     "in_loop.py: the consumer's loop is the worker's"),
    (ServiceThread.start, "self._thread = self.Worker(self)", "in_loop.py: start makes the thread"),
    (faust_aiokafka.AIOKafkaConsumerThread.on_start, "self._create_consumer(loop=self.thread_loop)",
     "in_loop.py: aiokafka's consumer is made on the worker's loop"),
    (aiokafka_sender.Sender._do_txn_offset_commit, "TxnOffsetCommitHandler(self, offsets, group_id)",
     "transactions.py: the handler is looked up in the module when used, so replacing it works"),
    (aiokafka_sender.TxnOffsetCommitHandler.create_request, "producer_epoch=txn_manager.producer_epoch",
     "transactions.py: v3 is built from the v0 request's fields"),
    (Recovery.__init__, "self.active_highwaters = Counter()", "app.py: end offset - 1 per partition"),
    (GroupCoordinator.__init__, "self.generation = ", "transactions.py: KIP-447 fencing"),
    (GroupCoordinator.__init__, "self.member_id = ", "transactions.py: KIP-447 fencing"),
    (GroupCoordinator.__init__, "self._group_instance_id = group_instance_id", "transactions.py"),
    (aiokafka.AIOKafkaProducer.__init__, "self._sender = Sender(", "transactions.py: the group for v3"),
    (aiokafka_sender.AddPartitionsToTxnHandler.handle_response, "return BACKOFF_OVERRIDE",
     "transactions.py: the module global is read when a transaction's first partitions are retried"),
    (aiokafka.AIOKafkaProducer.send_offsets_to_transaction, "add_offsets_to_txn",
     "transactions.py: offsets join the transaction"),
    (GroupCoordinator.fetch_committed_offsets, "offsets = await self._do_fetch_commit_offsets(partitions)",
     "stable_offsets.py: committed offsets are fetched through the method it replaces"),
    (GroupCoordinator._maybe_refresh_commit_offsets, "await self._do_fetch_commit_offsets(need_update)",
     "stable_offsets.py: and refreshed through it"),
    (GroupCoordinator.fetch_committed_offsets, "if not err.retriable:",
     "stable_offsets.py: UNSTABLE_OFFSET_COMMIT is raised as a retriable error, asked again"),
    (AIOKafkaConnection.send, "except OSError as err:",
     "connection.py: only OSError from a write becomes a connection error (uvloop raises RuntimeError)"),
    (AIOKafkaConnection.send, "self._writer.write(size + message)",
     "connection.py: the guard reads the same writer before the write"),
    (aiokafka_sender.Sender._do_add_partitions_to_txn, "AddPartitionsToTxnHandler(self, tps)",
     "transactions.py: handlers are looked up in the module when used, so replacing them works"),
    (aiokafka_sender.Sender._do_add_offsets_to_txn, "AddOffsetsToTxnHandler(self, group_id)", "same"),
    (aiokafka_sender.Sender._do_txn_commit, "EndTxnHandler(self, commit_result)", "same"),
    (aiokafka_sender.Sender._send_produce_req, "SendProduceReqHandler(self, batches)", "same"),
    (aiokafka_sender.SendProduceReqHandler.do, "await asyncio.sleep(self._default_backoff)",
     "transactions.py: the produce retry waits the handler's own backoff, which it may shorten"),
    (aiokafka_sender.SendProduceReqHandler.handle_response, "self._to_reenqueue.append(batch)",
     "transactions.py: batches to retry are collected there"),
    (aiokafka_sender.BaseHandler.do, "await asyncio.sleep(retry_backoff)",
     "transactions.py: the backoff handle_response returns is what the sender waits"),
]


def test_the_memory_store_never_replaces_its_dict() -> None:
    # FaustKV (app.py) holds the dict the store makes once: a store that assigned a new one would
    # leave the worker reading state that recovery no longer updates.
    source = inspect.getsource(MemoryStore)
    assert source.count("self.data =") + source.count("self.data: MutableMapping =") == 1


@pytest.mark.parametrize(
    ("owner", "name", "why"), ATTRIBUTES, ids=[f"{o.__name__}.{n}" for o, n, _ in ATTRIBUTES]
)
def test_internal_attribute_we_rely_on_exists(owner: type, name: str, why: str) -> None:
    assert hasattr(owner, name), f"{owner.__module__}.{owner.__name__}.{name} is gone ({why})"


@pytest.mark.parametrize(
    ("func", "text", "why"), SOURCES, ids=[f"{f.__qualname__}:{t}" for f, t, _ in SOURCES]
)
def test_internal_code_path_we_rely_on_is_unchanged(func: Callable[..., object], text: str, why: str) -> None:
    assert text in inspect.getsource(func), f"{func.__qualname__} no longer uses {text} ({why})"


@pytest.mark.parametrize("package", ["faust-streaming", "aiokafka", "mode-streaming"])
def test_installed_runtime_is_the_pinned_version(package: str) -> None:
    pins = dict(
        line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert version(package) == pins[package], (
        f"{package} {version(package)} is installed but constraints.txt pins {pins[package]}: "
        "run ./scripts/test (it installs from constraints.txt), or re-test and re-pin deliberately"
    )
