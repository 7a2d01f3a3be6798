"""Composition root: builds the Faust app, its state table, topics and the batch runner from Settings."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from faust.tables import TableManager
from faust.tables.recovery import Recovery

from ...core.processor import Processor
from ...core.records import Message
from ...core.topic_names import STATE_TABLE, changelog_topic, consumer_group
from ...settings import EXACTLY_ONCE, ROCKSDB, Settings
from ...state.keys import drop_partitions
from ..broadcast import BroadcastReader
from ..collector import Collector
from ..delivery import Delivery, one_line
from ..runner import BatchRunner
from ..summary_store import RocksSummaryStore, summary_store_path
from ..write_log import WriteLog
from .appender import Appender
from .connection import install_closed_transport_guard
from .rocks import SCHEME as ROCKSDB_STORE
from .rocks import RocksKV, StateStore
from .stable_offsets import install_stable_offsets
from .static_member import group_instance_id
from .transactions import GroupMetadata, KafkaTransactions, install_fencing, verification_retries
from .transport import BatchHandler, FetchToken, broker_urls

log = logging.getLogger(__name__)


class FaustKV:
    """The state store's KV seam over a Faust table.

    We set the table's store and produce its changelog records ourselves: each changed key once per
    batch, to the partition of the entity's events, through the worker's Delivery, so they are
    acknowledged before the batch's input offsets are committed. (Faust's own changelog buffer can
    still hold records when a commit goes ahead.)
    """

    def __init__(self, table: faust.Table, partitions: int) -> None:
        self.table = table
        self.partitions = partitions
        self.data: dict[bytes, bytes] = {}  # the store's, once bound
        # The store's key -> changelog partition of the keys its recovery wrote (Faust drops those of
        # partitions it no longer has, after recovery; not the keys we write live: see `keep_partitions`).
        self.key_partition: dict[bytes, int] = {}
        self.log = WriteLog()  # changelog records to produce; exactly-once, the undo log
        self.dropped = 0  # keys of partitions this worker lost, dropped from memory
        self.owned: set[int] | None = None  # partitions of the last assignment

    def bind(self) -> None:
        """Read and write the memory store's own dict, which Faust's recovery fills and never replaces
        (pinned in tests/test_runtime_pins.py): through the store, each get is three Python calls deep.
        Called as the worker starts: the store is a service, made on the loop that first asks for it."""
        self.data = self.table.data.data
        self.key_partition = self.table.data._key_partition

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def contents(self) -> dict[bytes, bytes]:  # walked by the background sweep (state/sweep.py)
        return self.data

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        log = self.log
        undo = log.undo
        if undo is not None and key not in undo:
            undo[key] = (partition, self.data.get(key))
        self.data[key] = value
        log.pending.append((partition, key, value))

    def delete(self, partition: int, key: bytes) -> None:
        log = self.log
        undo = log.undo
        if undo is not None and key not in undo:
            undo[key] = (partition, self.data.get(key))
        self.data.pop(key, None)
        self.key_partition.pop(key, None)  # else a recovered key's entry outlives it
        log.pending.append((partition, key, None))

    def keep_partitions(self, partitions: set[int]) -> None:
        """Drop from memory the keys of every other partition: after a rebalance, the keys written here
        while this worker owned partitions it has lost (their changelog keeps them for the new owner).
        Faust's store drops only the keys its recovery wrote."""
        if self.owned is None or not partitions >= self.owned:  # walk the table only when one was lost
            self.dropped += drop_partitions(self.data, partitions, self.partitions)
        self.owned = set(partitions)

    def committed(self) -> None:
        """The oldest open transaction committed (write_log.py)."""
        self.log.committed()

    def roll_back(self) -> int:
        """A transaction aborted: the open transactions' writes are undone (write_log.py)."""
        return self.log.roll_back(self._restore)

    def _restore(self, key: bytes, partition: int, value: bytes | None) -> None:
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = value

    def take(self) -> list[tuple[int, bytes, bytes | None]]:
        """The changelog records (partition, key, value or None) written since the last call."""
        return self.log.take()


class StreamRiskApp(faust.App):
    """A Faust app that carries our transport's settings: fetch wait and size, static membership, and the
    batch handler."""

    fetch_max_wait_ms: int | None = None
    fetch_min_bytes: int | None = None
    consumer_thread: bool = True  # Faust's consumer thread, or the worker's own loop (in_loop.py)
    group_instance_id: str | None = None
    batch_handler: BatchHandler | None = None
    input_topic: faust.TopicT | None = None
    kv: FaustKV | RocksKV | None = None
    # Exactly-once: its producer is started on the worker's loop and initialised (which aborts a
    # predecessor's open transaction) before recovery reads the changelog, which that would hold up.
    transactions: KafkaTransactions | None = None

    async def on_first_start(self) -> None:
        await super().on_first_start()
        if self.kv is not None:
            self.kv.bind()
        if self.transactions is not None:
            await self.transactions.start()
        # Subscribing is all the topic is for: the batch handler, not a Faust agent, takes its
        # records. (Not at build time: the conductor would bind to a loop that is not the worker's.)
        if self.input_topic is not None:
            self.topics.add(self.input_topic)


class _TransactionAwareRecovery(Recovery):
    """Faust's recovery, done with a changelog partition once the consumer has read past its end.

    Faust counts a partition recovered once it has received the record at `end - 1`. A changelog
    written in transactions ends with a commit marker, and may hold aborted records: neither is ever
    delivered, so recovery would wait forever. The consumer's position does move past both, and the
    transport notes it once every record below it is applied or queued (`restored_positions`); an
    open transaction (a dead worker's) still holds it back, as it must, until the transaction ends.
    """

    def active_remaining(self) -> Counter[Any]:
        remaining = super().active_remaining()
        # Only once the recovery loop has taken every record handed to it: a fetch's position moves
        # before its records reach the queue.
        if not self.app.tables.changelog_queue.empty():
            return remaining
        restored = getattr(self.app.consumer, "restored_positions", {})
        for tp, left in remaining.items():
            # `active_highwaters` is end offset - 1, as Faust counts.
            if left > 0 and restored.get(tp, -1) > self.active_highwaters[tp]:
                remaining[tp] = 0
        return remaining


class _PromptTableManager(TableManager):
    """Faust's table manager without the 1 s sleep it starts with.

    Faust waits a second for tables to be defined before it registers their changelogs and starts
    recovery; the consumer joins the group only after that. Our one table exists before the app
    starts, so the wait only delays every worker start, and so every restart after a crash.
    """

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = _TransactionAwareRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery

    async def on_start(self) -> None:
        if not self.should_stop:
            await self._update_channels()
            await self.recovery.start()


class _LazyAppender:
    """Faust starts its producer with the app; take its aiokafka producer at the first record, once
    (or the worker's own transactional producer, started with the app: see StreamRiskApp)."""

    def __init__(self, app: StreamRiskApp) -> None:
        self._app = app
        self.send: Callable[..., Any] = self._first_send
        if app.transactions is not None:  # each producer it starts (or replaces) is sent through
            app.transactions.on_producer = lambda producer: setattr(self, "send", Appender(producer).send)

    async def _first_send(self, *args: Any) -> Any:
        producer = self._app.producer
        await producer.maybe_start()
        self.send = Appender(producer._ensure_producer()).send
        return await self.send(*args)


def _transactional_producer(settings: Settings) -> AIOKafkaProducer:
    """The worker's exactly-once producer. Its id is stable per worker, so a restarted worker aborts
    its predecessor's open transaction at once (transactions.py)."""
    me = settings.group_instance_id or settings.web_url.split("://", 1)[-1]
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap.split(","),
        client_id=f"{consumer_group(settings)}-{me}",
        transactional_id=f"{consumer_group(settings)}-{me}",
        transaction_timeout_ms=int(settings.transaction_timeout_s * 1000),
        enable_idempotence=True,
        acks="all",
        linger_ms=1,
        max_batch_size=256 * 1024,
        request_timeout_ms=int(settings.delivery_timeout_s * 1000),
    )


def _group_metadata(app: StreamRiskApp) -> GroupMetadata | None:
    """The consumer's place in its group, for the offsets of a transaction (transactions.py)."""
    coordinator = getattr(app.consumer._thread._consumer, "_coordinator", None)
    if coordinator is None or coordinator.generation < 0:
        return None
    return GroupMetadata(
        app.conf.id, coordinator.generation, coordinator.member_id, coordinator._group_instance_id
    )


def build_app(settings: Settings) -> tuple[StreamRiskApp, Processor]:
    """Wire a worker: the app, the changelog-backed state table and the agent over the inputs."""
    settings.check()
    install_closed_transport_guard()  # the worker runs on uvloop (connection.py)
    group = consumer_group(settings)  # the app id: also names the group and the changelog (topics.py)
    app = StreamRiskApp(
        group,
        broker=broker_urls(settings.bootstrap),
        datadir=str(settings.data_dir / group),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_request_timeout=max(90.0, settings.session_timeout_s * 2),
        broker_rebalance_timeout=max(60.0, settings.session_timeout_s * 2),
        table_standby_replicas=settings.standby_replicas,
        web_enabled=True,
        # Faust's own /table and /router pages would serve table contents without our token.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_host=settings.web_host,
        canonical_url=settings.web_url,  # where the other workers forward requests for our keys
        # The state table: RocksDB partitions under the data dir, or memory (rocks.py, docs/state.md).
        store=f"{ROCKSDB_STORE}://" if settings.store == ROCKSDB else "memory://",
        producer_acks=-1,
        producer_linger_ms=1,
        # aiokafka keeps one request in flight per partition: larger batches carry more per round trip.
        producer_max_batch_size=256 * 1024,
        # A record not acknowledged in this time fails its delivery; Delivery re-sends it a few times,
        # then stops the worker (Faust's default is 20 minutes of silence).
        producer_request_timeout=settings.delivery_timeout_s,
        broker_max_poll_records=settings.batch_max,
        # The runner commits offsets itself (delivery.py); nothing waits on Faust's stream acks.
        stream_wait_empty=False,
        TableManager=_PromptTableManager,
    )
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    app.fetch_min_bytes = settings.fetch_min_bytes
    app.consumer_thread = settings.consumer_thread
    if settings.group_instance_id:
        app.group_instance_id = group_instance_id(settings.group_instance_id, settings.web_url)
    StateStore.memory_bytes = settings.rocksdb_memory_mb << 20
    table = app.Table(
        STATE_TABLE,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
    )
    if table.changelog_topic.get_topic_name() != changelog_topic(settings):
        raise RuntimeError("Faust names the changelog otherwise than topics.changelog_topic")
    # Keys and values are our own bytes, both live and when recovered from the changelog.
    table.key_serializer = table.value_serializer = "raw"
    kv: FaustKV | RocksKV = FaustKV(table, settings.partitions)
    if settings.store == ROCKSDB:
        kv = RocksKV(table, settings.partitions)
    app.kv = kv
    # Bounded merchant view: the summaries on local disk, rebuilt at each start (summary_store.py).
    summaries = RocksSummaryStore(summary_store_path(settings)) if settings.merchant_cache_size > 0 else None
    processor = Processor(settings, kv, check_partitions=True, summary_store=summaries)
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "partitions": settings.partitions,
    }
    app.input_topic = app.topic(*processor.input_topics, **raw)
    changelog = table.changelog_topic.get_topic_name()

    def current_value(topic: str, key: bytes | None, value: bytes | None) -> bytes | None:
        # A changelog record sent again carries its key's newest value (delivery.py).
        return kv.get(key) if topic == changelog and key is not None else value

    if settings.processing_guarantee == EXACTLY_ONCE:
        install_fencing()
        install_stable_offsets()
        app.transactions = KafkaTransactions(
            lambda: _transactional_producer(settings), lambda: _group_metadata(app)
        )
        kv.log.keep_undo()
        log.info("processing guarantee: exactly-once (Kafka transactions)")
    else:
        log.info("processing guarantee: at-least-once")
    producer: Any = _LazyAppender(app)
    if isinstance(kv, RocksKV):  # the offset each partition's changelog reached, for its clean mark
        producer = kv.track(producer, changelog)
    delivery = Delivery(
        producer,
        lambda offsets: app.consumer._commit(offsets),  # Faust's commit, without its ack bookkeeping
        max_attempts=settings.delivery_attempts,
        # A batch may wait in the accumulator up to the producer's timeout, then in flight as long.
        attempt_timeout_s=2 * settings.delivery_timeout_s + 1,
        transactions=app.transactions,
        refresh=current_value,
    )

    async def on_broadcast(m: Message, caught_up: bool) -> None:
        await runner.send_now(lambda: processor.on_broadcast(m, report=caught_up))

    def still_current(fetched: FetchToken) -> bool:
        # A batch fetched before a rebalance or a seek, or while recovery has not yet sought the
        # input partitions to their committed offsets, is read again from where the seek puts them.
        consumer = app.consumer
        return (
            consumer.fetch_token() == fetched
            and consumer.flow_active
            and app.tables.recovery.completed.is_set()
        )

    broadcast = BroadcastReader(settings, processor.broadcast_topics, on_broadcast)
    async def stop_loudly(exc: BaseException) -> None:
        # Delivery failures past every retry stop the worker: its uncommitted input is read again.
        # The reason on one line; the traceback after it.
        log.critical("stopping the worker: %s", one_line(exc), exc_info=True)
        await app.crash(exc)

    runner = BatchRunner(
        processor, delivery, changelog, kv.take, still_current,
        ready=broadcast.ready, ready_timeout_s=settings.broadcast_ready_timeout_s,
        on_failure=stop_loudly,
        state=kv,
    )
    app.batch_handler = runner

    async def or_stop(step: Callable[[], Any]) -> None:
        try:
            await step()
        except Exception as exc:
            await stop_loudly(exc)

    @app.on_partitions_revoked.connect
    async def checkpoint_before_rebalance(app: faust.App, revoked: Any, **_: Any) -> None:
        await or_stop(lambda: handed_back(runner.on_revoked(set(revoked))))

    @app.on_partitions_assigned.connect
    async def drop_state_of_lost_partitions(app: faust.App, assigned: Any, **_: Any) -> None:
        # Not on revocation: a rebalance revokes every partition first, then assigns most back, and
        # Faust does not restore the ones a worker keeps.
        kv.keep_partitions({tp.partition for tp in assigned if tp.topic == processor.input_topics[0]})

    async def handed_back(checkpoint: Any) -> None:
        await checkpoint
        # Committed: the local state is what the changelog holds (rocks.py).
        if isinstance(kv, RocksKV) and delivery.failure is None:
            left = kv.mark_clean()
            if left:
                log.warning("local state of partitions %s left dirty: wiped at the next start", left)

    @app.on_before_shutdown.connect
    async def last_checkpoint(app: StreamRiskApp, **_: Any) -> None:
        await or_stop(lambda: handed_back(runner.close()))
        if isinstance(kv, RocksKV):
            kv.close()
        if app.transactions is not None:
            await app.transactions.stop()

    @app.timer(interval=settings.commit_interval_ms / 1000)
    async def checkpoint() -> None:
        await or_stop(runner.checkpoint)

    @app.timer(interval=settings.summary_interval_ms / 1000)
    async def publish_summaries() -> None:
        await or_stop(runner.publish_summaries)

    @app.task
    async def read_broadcast() -> None:
        await broadcast.run()

    collector = Collector(settings.gc_full_interval_s)
    if settings.gc_freeze_interval_s > 0:
        # The GC thresholds are the process's: changed when the worker runs, not when it is built.
        @app.task
        async def start_collector() -> None:
            collector.start()

        @app.on_before_shutdown.connect
        async def stop_collector(app: faust.App, **_: Any) -> None:
            collector.stop()

        @app.timer(interval=settings.gc_freeze_interval_s)
        async def hide_survivors_from_gc() -> None:
            collector.tick()

    from ...web.routes import register_routes

    def runtime_stats() -> dict[str, Any]:
        store = kv.stats() if isinstance(kv, RocksKV) else {"kind": "memory"}
        return {
            **runner.stats(), **collector.stats(),
            "keys_dropped_at_rebalance": kv.dropped, "state_store": store,
            # exactly-once: produce requests retried early, refused while the coordinator was busy
            "produce_retries_verification": verification_retries(),
        }

    register_routes(app, processor, runtime_stats, broadcast, runner.batch_observers)
    return app, processor
