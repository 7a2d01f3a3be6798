"""Topics every worker reads whole: the rules control topic and the merchant risk summaries.

A consumer group splits partitions between workers, but every worker needs every ruleset (to decide
with the same rules) and every merchant's summary (its payments may be at any merchant). So each
worker reads these compacted topics outside the group, from the beginning, and `ready` tells when it
has caught up with what was there at start: deciding before that would use stale rules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from ..core.records import Message
from ..core.topic_names import consumer_group
from ..settings import Settings

log = logging.getLogger(__name__)

# (message, caught_up) -> None; caught_up is False while replaying what was there at start.
Handler = Callable[[Message, bool], Awaitable[None]]


class BroadcastReader:
    """One consumer without a group over `topics`, feeding every record to `handle` in order."""

    def __init__(self, settings: Settings, topics: Sequence[str], handle: Handler) -> None:
        self.settings = settings
        self.topics = list(topics)
        self.handle = handle
        self.ready = asyncio.Event()
        self.records = 0
        self.failures = 0
        self._next: dict[TopicPartition, int] = {}  # next offset to apply, per partition

    async def run(self) -> None:
        """Read until cancelled (the app cancels it at shutdown); start over after a failure."""
        while True:
            try:
                await self._read()
            except Exception:
                # The new consumer reads from the beginning again; records already applied are
                # skipped, so an old ruleset never comes back, even for a moment.
                log.exception("broadcast reader failed; starting over in 1 s")
                await asyncio.sleep(1.0)

    async def _read(self) -> None:
        consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.settings.bootstrap.split(","),
            group_id=None,  # every partition, no commits: each worker reads it all
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            client_id=f"{consumer_group(self.settings)}-broadcast",
        )
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                caught_up = self.ready.is_set()
                for tp, records in batches.items():
                    applied = self._next.get(tp, 0)
                    for r in records:
                        if r.offset < applied:
                            continue  # applied before the reader started over
                        self._next[tp] = r.offset + 1
                        self.records += 1
                        msg = Message(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
                        try:
                            await self.handle(msg, caught_up)
                        except Exception:
                            # One bad record must not stop rules and summaries for good.
                            self.failures += 1
                            log.exception("%s[%d]@%d: record not applied", r.topic, r.partition, r.offset)
                if not caught_up and await self._at_end(consumer):
                    log.info("read %d broadcast records; deciding with the current rules", self.records)
                    self.ready.set()
        finally:
            await consumer.stop()

    async def _at_end(self, consumer: AIOKafkaConsumer) -> bool:
        # The fetch high watermark, not ListOffsets: some brokers answer the latter short.
        assigned = consumer.assignment()
        if {tp.topic for tp in assigned} != set(self.topics):
            return False
        for tp in assigned:
            high = consumer.highwater(tp)
            if high is None or await consumer.position(tp) < high:
                return False
        return True
