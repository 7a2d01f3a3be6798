"""Composition root: builds the Faust app, its state table, topics and the batch agent from Settings."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust

from .broadcast import BroadcastReader
from .processor import Message, Processor, messages
from .settings import Settings
from .sinks import Outbox
from .topics import STATE_TABLE
from .transport import OffsetContinuity, broker_urls

log = logging.getLogger(__name__)


class FaustKV:
    """The state store's KV seam over a Faust table.

    We set the table's store and produce its changelog records ourselves: each changed key once per
    batch, to the partition of the entity's events, and through the batch's Outbox, so they are
    delivered before the batch's input offsets can be committed. (Faust's own changelog buffer can
    still hold records when a commit goes ahead.)
    """

    def __init__(self, table: faust.Table) -> None:
        self.table = table
        self.pending: list[tuple[int, bytes, bytes | None]] = []

    def get(self, key: bytes) -> bytes | None:
        return self.table.data.get(key)

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self.table.data[key] = value
        self.pending.append((partition, key, value))

    def delete(self, partition: int, key: bytes) -> None:
        self.table.data.pop(key, None)
        self.pending.append((partition, key, None))

    async def send(self, outbox: Outbox) -> None:
        topic = self.table.changelog_topic.get_topic_name()
        pending, self.pending = self.pending, []
        for partition, key, value in pending:
            await outbox.send(topic, key, value, partition)


class StreamRiskApp(faust.App):
    """A Faust app that carries the consumer fetch wait our transport applies (see transport.py)."""

    fetch_max_wait_ms: int | None = None


def build_app(settings: Settings) -> tuple[StreamRiskApp, Processor]:
    """Wire a worker: the app, the changelog-backed state table and the agent over the inputs."""
    settings.check()
    app = StreamRiskApp(
        settings.app_id,
        broker=broker_urls(settings.bootstrap),
        datadir=str(settings.data_dir / settings.app_id),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_request_timeout=max(90.0, settings.session_timeout_s * 2),
        broker_rebalance_timeout=max(60.0, settings.session_timeout_s * 2),
        table_standby_replicas=0,
        web_enabled=True,
        # Faust's own /table and /router pages would serve table contents without our token.
        web_tables_enabled=False,
        web_router_enabled=False,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_host=settings.web_host,
        store="memory://",
        producer_acks=-1,
        producer_linger_ms=1,
    )
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    table = app.Table(
        STATE_TABLE,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
    )
    # Keys and values are our own bytes, both live and when recovered from the changelog.
    table.key_serializer = table.value_serializer = "raw"
    kv = FaustKV(table)
    processor = Processor(settings, kv)
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "partitions": settings.partitions,
    }
    inputs = app.topic(*processor.input_topics, **raw)
    continuity = OffsetContinuity(app, set(processor.input_topics))
    idle = {"since": time.monotonic(), "busy": False}

    @app.on_partitions_revoked.connect
    async def forget_state(app: faust.App, revoked: Any, **_: Any) -> None:
        # Entities of revoked partitions may move; rebuild from the table on next touch.
        processor.forget()
        continuity.reset()

    async def on_broadcast(m: Message, caught_up: bool) -> None:
        outs = processor.on_broadcast(m, report=caught_up)
        if outs:
            outbox = Outbox(app.producer)
            for out in outs:
                await outbox.send(out.topic, out.key, out.value)
            await outbox.flush()

    broadcast = BroadcastReader(settings, processor.broadcast_topics, on_broadcast)

    @app.task
    async def read_broadcast() -> None:
        await broadcast.run()

    async def reread(gaps: dict[Any, int], why: str) -> None:
        for tp, offset in gaps.items():
            log.warning("%s: records from offset %d %s; reading them again", tp, offset, why)
            await app.consumer.seek(tp, offset)

    @app.agent(inputs, name="process")
    async def process(stream: faust.StreamT) -> None:
        outbox = Outbox(app.producer)
        # Decide with the rules in force, not the ones a worker starts with.
        try:
            await asyncio.wait_for(broadcast.ready.wait(), settings.broadcast_ready_timeout_s)
        except TimeoutError:
            log.warning(
                "rules and merchant summaries not read within %.0f s; deciding with ruleset %s",
                settings.broadcast_ready_timeout_s, processor.rules.ruleset.version,
            )
        batch: list[faust.EventT] = []
        queue = stream.channel.queue
        # Batches form by themselves: take what is already buffered (up to batch_max), process
        # it, and ack it only once everything it produced is delivered. No timer adds latency.
        async for event in stream.noack().events():
            batch.append(event)
            if len(batch) < settings.batch_max and not queue.empty():
                continue
            idle["busy"] = True
            gaps = await continuity.gaps_in([(e.message.tp, e.message.offset) for e in batch])
            outs = processor.process(messages(batch))
            # Take the state's changelog writes before the first await: a rebalance handled
            # during an await forgets in-memory state, and must not forget unwritten changes.
            processor.flush_state()
            # Outputs first, state second. A crash between the two replays the batch against
            # state that lacks it, so its decisions are made again (same ids); the other order
            # would find the events already held and never decide them.
            for out in outs:
                await outbox.send(out.topic, out.key, out.value)
            await outbox.flush()
            await kv.send(outbox)
            await outbox.flush()
            for e in batch:
                await stream.ack(e)
            batch.clear()
            if gaps:
                await reread(gaps, "were skipped before this batch")
            idle["busy"] = False
            idle["since"] = time.monotonic()

    settled = {"generation": None}

    @app.timer(interval=0.5)
    async def reread_lost_records() -> None:
        generation = app.consumer_generation_id
        if settled["generation"] != generation and app.tables.recovery.completed.is_set():
            settled["generation"] = generation
            for tp, offset in (await continuity.restart_points()).items():
                await app.consumer.seek(tp, offset)
            return
        if not idle["busy"] and time.monotonic() - idle["since"] >= 2.0:
            await reread(continuity.behind_reader(), "never reached the agent")

    from .web.routes import register_routes

    register_routes(app, processor, broadcast)
    return app, processor
