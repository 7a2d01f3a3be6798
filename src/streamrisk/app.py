"""Composition root: builds the Faust app, its state table, topics and the batch agent from Settings."""

from __future__ import annotations

import logging
from typing import Any

import faust

from .processor import Processor, messages
from .settings import CONTROL_TOPIC, INPUT_TOPICS, OUTPUT_TOPICS, Settings
from .sinks import Outbox
from .transport import broker_urls

log = logging.getLogger(__name__)


class FaustKV:
    """The state store's KV seam over a Faust table: we set the store and send the changelog
    ourselves so a batch writes each changed key once, to the partition of the entity's events."""

    def __init__(self, table: faust.Table) -> None:
        self.table = table

    def get(self, key: bytes) -> bytes | None:
        return self.table.data.get(key)

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self.table.data[key] = value
        self.table.send_changelog(
            partition, key, value, key_serializer="raw", value_serializer="raw"
        )

    def delete(self, partition: int, key: bytes) -> None:
        self.table.data.pop(key, None)
        self.table.send_changelog(
            partition, key, None, key_serializer="raw", value_serializer="raw"
        )


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
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_host=settings.web_host,
        store="memory://",
        producer_acks=-1,
        producer_linger_ms=1,
    )
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    table = app.Table(
        "state",
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
    )
    # Keys and values are our own bytes, both live and when recovered from the changelog.
    table.key_serializer = table.value_serializer = "raw"
    processor = Processor(settings, FaustKV(table))
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "partitions": settings.partitions,
    }
    inputs = app.topic(*processor.input_topics, **raw)
    declared = [
        app.topic(settings.topic(name), **raw)
        for name in (*INPUT_TOPICS, *OUTPUT_TOPICS, CONTROL_TOPIC)
    ]
    declared.append(app.topic(processor.t_merchant_events, **raw))

    @app.task
    async def create_topics() -> None:
        for topic in declared:
            await topic.maybe_declare()

    @app.on_partitions_revoked.connect
    async def forget_state(app: faust.App, revoked: Any, **_: Any) -> None:
        # Entities of revoked partitions may move; rebuild from the table on next touch.
        processor.users.forget()
        processor.merchants.forget()

    @app.agent(inputs, name="process")
    async def process(stream: faust.StreamT) -> None:
        outbox = Outbox(app.producer)
        async for events in stream.take_events(settings.batch_max, settings.batch_within_s):
            for out in processor.process(messages(events)):
                await outbox.send(out.topic, out.key, out.value)
            processor.flush_state()
            # Acked (and so committable) only after every output of the batch is delivered.
            await outbox.flush()

    from .web.api import register_routes

    register_routes(app, processor)
    return app, processor
