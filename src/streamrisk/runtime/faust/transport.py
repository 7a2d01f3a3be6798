"""Faust's aiokafka transport, made safe for any Kafka-compatible broker.

- Faust hard-codes `fetch_max_wait_ms=1500` for worker consumers. A broker that does not wake a parked
  fetch when data arrives then adds up to 1.5 s to every decision; a risk decision has a budget of
  milliseconds, so the wait comes from `Settings.fetch_max_wait_ms` instead.
- Table recovery reads each changelog partition up to its end offset (ListOffsets). Some
  Kafka-compatible brokers answer that with the start of the last record batch rather than the end,
  and recovery would then silently stop short of the newest state. A fetch's high watermark is
  authoritative, so the end offsets recovery uses are confirmed with one fetch per partition.
- A worker with a group instance id joins as a static member, and leaves the group when it stops
  gracefully, which aiokafka does not do for static members (static_member.py).
- The consumer reads committed records only (`read_committed`), so a payment in an aborted transaction
  of an upstream transactional producer is never decided; Faust does so only in its own
  exactly-once mode.
- Changelog records read for recovery are applied to the table in bulk, not one event at a time
  (restore.py).
- The consumer runs on the worker's own loop, not in Faust's consumer thread (in_loop.py), unless
  `STREAMRISK_CONSUMER_THREAD=1`.
- The input topics skip Faust's per-event streams: each fetch goes to a batch handler whole
  (`_Consumer._drain_messages`), which processes it and commits its offsets through `delivery.py`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiokafka
from aiokafka.consumer.group_coordinator import GroupCoordinator
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.drivers.aiokafka import server_list
from faust.types import TP

from .in_loop import InLoop
from .restore import apply_in_bulk
from .static_member import leave_on_stop

SCHEME = "streamrisk"


class EndOffsetsUnconfirmed(Exception):
    """The broker did not confirm a changelog partition's end offset in time: recovery must not guess."""


async def confirmed_end_offsets(
    bootstrap: list[str], listed: Mapping[TP, int], timeout_s: float = 60.0
) -> dict[TP, int]:
    """End offsets no lower than the high watermark a fetch reports for each partition.

    Rides out a broker that is restarting (the probe reconnects until `timeout_s`); past that it
    raises rather than fall back to `listed`, which may stop recovery short of the newest state.
    """
    out = dict(listed)
    pending = {
        aiokafka.TopicPartition(tp.topic, tp.partition): tp for tp, end in listed.items() if end > 0
    }
    deadline = time.monotonic() + timeout_s
    why = f"no high watermark in {timeout_s} s"
    while pending:
        probe = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10
        )
        try:
            await probe.start()
            probe.assign(list(pending))
            for part, tp in pending.items():
                probe.seek(part, listed[tp] - 1)
            while pending and time.monotonic() < deadline:
                await probe.getmany(*pending, timeout_ms=100, max_records=1)
                for part in [p for p in pending if probe.highwater(p) is not None]:
                    tp = pending.pop(part)
                    out[tp] = max(out[tp], probe.highwater(part))
        except aiokafka.errors.KafkaError as exc:  # the broker is away: try again until the deadline
            why = repr(exc)
            await asyncio.sleep(0.5)
        finally:
            await probe.stop()
        if pending and time.monotonic() >= deadline:
            raise EndOffsetsUnconfirmed(f"end offsets of {sorted(pending.values())}: {why}")
    return out


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    _bootstrap: list[str]

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        listed = await super()._highwaters(partitions)
        if self.consumer.in_transaction:
            return listed
        return await confirmed_end_offsets(self._bootstrap, listed)

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        self._bootstrap = server_list(transport.url, transport.default_port)
        consumer = super()._create_worker_consumer(transport)
        # Never decide a payment from an aborted transaction of an upstream transactional producer.
        # (Faust reads committed records only when it runs transactions itself.) Read by start().
        consumer._isolation_level = "read_committed"
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # Read by AIOKafkaConsumer.start() when it builds its Fetcher; there is no public setter.
            consumer._fetch_max_wait_ms = int(wait_ms)
        min_bytes = getattr(self.app, "fetch_min_bytes", None)
        if min_bytes is not None:
            consumer._fetch_min_bytes = int(min_bytes)  # read by start() too
        # Read by start() when it builds its group coordinator (static_member.py).
        consumer._group_instance_id = getattr(self.app, "group_instance_id", None)
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        coordinator = getattr(self._consumer, "_coordinator", None)
        if isinstance(coordinator, GroupCoordinator):  # a worker's consumer, in a group
            leave_on_stop(coordinator)


class _InLoopConsumerThread(InLoop, _ConsumerThread):
    """The same consumer on the worker's loop (in_loop.py)."""


# (consumer group generation, seeks so far) when a fetch began.
FetchToken = tuple[int, int]


@dataclass(slots=True)
class TopUp:
    """When a fetch's records are stale, and one more fetch should join them before the batch.

    aiokafka fetches no more from a broker while records fetched from it wait to be taken. Records
    fetched while the previous batch was processed (and, exactly-once, committed) are therefore only
    those of the first fetch that returned during it: the ones that arrived later wait a whole batch
    more, which at 1,000 payments/s doubled exactly-once's produce -> decision latency. Records that
    were waiting when asked for (the fetch returned at once) after a batch that took longer than a
    fetch's round trip are topped up by one more fetch, which the broker answers at once when more
    arrived, and otherwise costs at most `wait_s`.
    """

    wait_s: float  # 0: never
    after_s: float = 0.002  # a batch shorter than this leaves nothing much behind
    instant_s: float = 0.0005  # a fetch that returned sooner had its records waiting
    last_batch_s: float = 0.0

    def due(self, fetch_s: float) -> bool:
        return self.wait_s > 0 and fetch_s < self.instant_s and self.last_batch_s > self.after_s


class BatchHandler(Protocol):
    """Takes the records of `topics` one whole fetch at a time (see `_Consumer._drain_messages`)."""

    topics: frozenset[str]
    # Set when state was rolled back to the committed offsets (an aborted transaction): the records
    # fetched since are dropped and the input read again from there; the transport clears it.
    read_again: bool

    async def on_batch(
        self, records: Mapping[TP, list[Any]], positions: Mapping[TP, int], fetched: FetchToken
    ) -> bool:
        """`records` of one fetch by partition; `positions`: the next offset to read of every input
        partition fetched from, which is past the last record and any transaction markers after it.
        `fetched` says when the fetch began (`_Consumer.fetch_token`); a batch fetched before a
        rebalance or a seek is not taken (False): the seek, done or to come, reads it again."""


class _Consumer(faust_aiokafka.Consumer):
    _seeks = 0
    _restored: dict[TP, int] | None = None

    @property
    def restored_positions(self) -> dict[TP, int]:
        """Changelog partition -> position below which every record was applied or queued for recovery
        (as of the last fetch, and since the last seek of that partition)."""
        if self._restored is None:
            self._restored = {}
        return self._restored

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        threaded = getattr(self.app, "consumer_thread", True)
        kind = _ConsumerThread if threaded else _InLoopConsumerThread
        return kind(self, loop=self.loop, beacon=self.beacon)

    # Every seek (Faust seeks the input partitions to their committed offsets after each rebalance,
    # racing with fetches already under way) makes the records fetched before it stale.
    async def perform_seek(self) -> None:
        self._seeks += 1
        self.restored_positions.clear()
        await super().perform_seek()

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        self._seeks += 1
        for tp in partitions:
            self.restored_positions.pop(tp, None)
        await super().seek_wait(partitions)

    async def seek(self, partition: TP, offset: int) -> None:
        self._seeks += 1
        self.restored_positions.pop(partition, None)
        await super().seek(partition, offset)

    def fetch_token(self) -> FetchToken:
        """Taken before a fetch; compared after it (see BatchHandler.on_batch)."""
        return (self.app.consumer_generation_id, self._seeks)

    async def _drain_messages(self, fetcher: Any) -> None:
        """Faust's fetch loop, but the batch handler's topics bypass Faust's per-event streams.

        Faust hands each record to a stream as an event (a Message, an Event, a queue hop, an ack),
        about 60 µs of overhead per record, and a rebalance can catch a record between the fetch and
        the stream. Here each fetch's records of the handler's topics (aiokafka ConsumerRecords) go to
        the handler in one call; the handler commits their offsets itself, so Faust's acks and gap
        tracking are not involved. Table changelogs during recovery are applied in bulk (restore.py).
        """
        handler: BatchHandler | None = getattr(self.app, "batch_handler", None)
        if handler is None:
            return await super()._drain_messages(fetcher)
        topics = handler.topics
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        last_positions: dict[TP, int] = {}
        top_up = TopUp(getattr(self.app, "fetch_top_up_ms", 0) / 1000)
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                if not self.flow_active:
                    await self.wait(self.can_resume_flow)  # as _wait_next_records would
                fetched = self.fetch_token()
                asked = time.monotonic()
                records, active = await self._wait_next_records(1.0)
                await asyncio.sleep(0)  # getmany can return at once, over and over
                if self.should_stop or records is None:
                    continue
                if handler.read_again:
                    last_positions = {}
                    await self._seek_to_committed()
                    continue
                if records and top_up.due(time.monotonic() - asked):
                    await self._top_up(records, top_up.wait_s)
                if records and not self.flow_active:
                    # Fetched while a rebalance stops the flow: read again from the committed offsets.
                    await self._seek_to_committed()
                    continue
                ours: dict[TP, list[Any]] = {}
                for tp, batch in records.items():
                    if active is not None and tp not in active:
                        continue
                    if tp.topic in topics:
                        ours[tp] = batch
                    else:
                        await self._restore(tp, batch)
                # Every changelog record below these positions is applied or queued for recovery:
                # what recovery may count as read (app.py), past markers and aborted records.
                self.restored_positions.update(
                    self.known_positions(tp for tp in (active or ()) if tp.topic not in topics)
                )
                # Read now, before the next fetch moves them: only getmany advances positions.
                positions = self.known_positions(tp for tp in (active or ()) if tp.topic in topics)
                if ours or (positions != last_positions and self.flow_active):
                    # Also without records: a fetch of transaction markers alone moves a position.
                    last_positions = positions
                    started = time.monotonic()
                    taken = await handler.on_batch(ours, positions, fetched)
                    top_up.last_batch_s = time.monotonic() - started
                    if not taken:
                        # Fetched around a rebalance or a seek: not taken, so read from the committed
                        # offsets again (as Faust does); at or below any record not yet processed.
                        last_positions = {}
                        await self._seek_to_committed()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception as exc:
            # A failure we cannot handle stops the worker (the batch is read again by whoever owns its
            # partitions next); Faust would only stop this fetcher and leave the worker up, idle.
            self.log.exception("batch processing failed, stopping the worker: %r", exc)
            await self.app.crash(exc)
            raise

    async def _top_up(self, records: dict[TP, list[Any]], wait_s: float) -> None:
        """Add to `records` whatever one more fetch brings within `wait_s` (see `TopUp`)."""
        more, _ = await self._wait_next_records(wait_s)
        for tp, batch in (more or {}).items():
            records[tp] = [*records.get(tp, ()), *batch]

    async def _seek_to_committed(self) -> None:
        """Read from the committed offsets again, and from the beginning where nothing was committed.

        aiokafka's `seek_to_committed` (Faust's `perform_seek`) leaves a partition without a committed
        offset where it was, past the records just dropped: they would never be read.
        """
        self._seeks += 1
        handler = getattr(self.app, "batch_handler", None)
        if handler is not None:
            handler.read_again = False
        try:
            committed = await self.seek_to_committed()
            fresh = [tp for tp, offset in committed.items() if not offset]
            if fresh:
                await self._thread.seek_to_beginning(*fresh)
        except Exception as exc:  # partitions may be moving: the next assignment seeks them anyway
            self.log.warning("seek to committed offsets after a dropped batch failed: %r", exc)

    def verify_event_path(self, now: float, tp: TP) -> None:
        # Faust's livelock check reads each assigned partition's fetch position, which aiokafka asserts
        # is set. Just after an assignment (recovery done, the seek to the committed offsets pending) it
        # is not, and the assertion crashed the worker: such a partition has nothing to check yet.
        if tp in self.known_positions((tp,)):
            super().verify_event_path(now, tp)

    def known_positions(self, tps: Iterable[TP]) -> dict[TP, int]:
        """The next offset to read of each of `tps` the consumer knows now, without a round trip (also
        what /metrics reads, so a scrape answers while the broker is away)."""
        # aiokafka's own bookkeeping, read on this thread: `consumer.position()` would be a round trip
        # to the consumer thread per partition, and getmany (the only thing that moves a position
        # between rebalances) is not running now.
        assignment = self._thread._ensure_consumer()._subscription.subscription
        states = assignment.assignment if assignment is not None else None
        out: dict[TP, int] = {}
        if states is None:
            return out
        for tp in tps:
            state = states.state_value(tp)
            if state is not None and state.has_valid_position:
                out[tp] = state.position
        return out

    async def _restore(self, tp: TP, batch: list[Any]) -> None:
        """Changelog records: in bulk during recovery (restore.py), else through Faust's own path."""
        if apply_in_bulk(self.app, tp, batch):
            # The recovery loop sees the last one already applied and checks whether recovery is done.
            batch = batch[-1:]
        await self._deliver_one_by_one(tp, batch)

    async def _deliver_one_by_one(self, tp: TP, batch: list[Any]) -> None:
        # Faust's own per-record path (as in Consumer._drain_messages), for changelog records.
        read_offset = self._read_offset
        for record in batch:
            message = self._to_message(tp, record)
            r_offset = read_offset.get(tp)
            if r_offset is None or message.offset >= r_offset:
                await self.wait_first(self.callback(message), self.suspend_flow.wait())
                read_offset[tp] = message.offset


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


TRANSPORTS[SCHEME] = f"{__name__}:Transport"


def broker_urls(bootstrap: str) -> list[str]:
    """`host:port[,host:port]` to the URL list Faust takes, using this transport."""
    return [f"{SCHEME}://{hp.strip()}" for hp in bootstrap.split(",") if hp.strip()]
