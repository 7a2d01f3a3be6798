"""The worker's batch loop: each fetch of input records through the processor, out through delivery.

The consumer hands over one fetch at a time (transport.py). A batch is processed and its records handed
to the producer under `lock`; a rebalance takes the same lock, so it never sees half a batch. Offsets
are committed by `Delivery.checkpoint`: on an interval, when partitions are revoked, and at shutdown.

Exactly-once commits each batch in a transaction of its own, as soon as the batch is sent, so a
decision is visible to `read_committed` readers a round trip after it is made. A large batch (a
backlog) commits while the next batch is processed (whose records wait for that commit before they are
sent, since a producer has one transaction open at a time): the broker writes one batch while the worker
computes the next. Every other holder of the lock first waits for the transaction in flight.

After each batch its observers (`batch_observers`: the /metrics histograms) are told of it, with the
seconds the processor took on it.

After a failed checkpoint nothing more is processed: the batches still fetched are dropped, to be
read again by the restarted worker. An aborted transaction (exactly-once: the broker restarted, the
group moved on while this worker was away) is not a failure: nothing of it is visible and no offset
moved, so the state it wrote is undone (`state.roll_back`, with the state of the batch processed on
top of it), the processor forgets what it holds in memory, and the input is read again from the
committed offsets (`read_again`, which the transport acts on).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from ..core.processor import Processor
from ..core.records import Out
from .delivery import Delivery, TransactionAborted

log = logging.getLogger(__name__)

# Exactly-once: a batch at least this large (a backlog) commits while the next one is processed; a
# smaller one (live traffic, where processing takes less than a commit) commits before the next batch
# is taken, which then holds everything that arrived meanwhile. Taken at once, the next batch would hold
# the few records fetched so far, and the ones after them would wait for two commits instead of one.
PIPELINED_BATCH = 200
# Exactly-once: records processed between yields to the loop while the last batch's transaction commits.
# Processing is synchronous, so without a yield that transaction's requests (add partitions, produce,
# offsets, commit) would go out only once the whole next batch is done, and nothing would overlap:
# on a 40,000-payment backlog (3 alternating runs) a yield every 200 made exactly-once 2-15 % faster.
YIELD_EVERY = 200

Changelog = Callable[[], list[tuple[int, bytes, bytes | None]]]
# Told of each processed batch: its records, and the seconds the processor took on it (web/metrics.py).
BatchObserver = Callable[[Sequence[Any], float], None]


class State(Protocol):
    """Exactly-once: the state table's undo of aborted transactions (app.FaustKV, write_log.py)."""

    def committed(self) -> None:
        """The oldest transaction of those whose changelog records were taken committed."""
        ...

    def roll_back(self) -> int: ...


def run_queue_wait_s(native_id: int) -> float | None:
    """Seconds a thread has been runnable but waiting for a core (Linux schedstat), or None.

    A batch that takes long in wall time but little CPU waited either for a core (this grows) or for
    something else (the GIL, a lock): the figure tells the two apart.
    """
    try:
        with open(f"/proc/self/task/{native_id}/schedstat", "rb") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


class BatchRunner:
    """Processes fetched batches and owns the worker's checkpoints (transport.BatchHandler)."""

    def __init__(
        self,
        processor: Processor,
        delivery: Delivery,
        changelog_topic: str,
        take_changelog: Changelog,
        still_current: Callable[[Any], bool],
        ready: asyncio.Event | None = None,
        ready_timeout_s: float = 30.0,
        on_failure: Callable[[BaseException], Awaitable[None]] | None = None,
        state: State | None = None,
    ) -> None:
        self.processor = processor
        self.delivery = delivery
        self.topics = frozenset(processor.input_topics)
        self._changelog_topic = changelog_topic
        self._take_changelog = take_changelog
        self._still_current = still_current
        # Set once the rules and merchant summaries published before this worker started are read.
        self.ready = ready
        self.ready_timeout_s = ready_timeout_s
        self._on_failure = on_failure  # stops the worker (app.py)
        self._state = state
        self.rewinds = 0  # aborted transactions undone
        # Exactly-once: the last batch's transaction, committing while the next batch is processed.
        self._in_flight: asyncio.Task[bool] | None = None
        self._reaping: asyncio.Future[None] | None = None
        # An aborted transaction was undone: the input must be read from the committed offsets again
        # (the transport seeks, and clears this).
        self.read_again = False
        self.lock = asyncio.Lock()
        # Highest offset processed per partition by this process: a record at or below it is read again.
        self._high: dict[Any, int] = {}
        self.records = 0
        self.batches = 0
        self.records_read_again = 0
        self.batches_dropped = 0  # fetched before a rebalance; read again from the committed offsets
        self.rebalances = 0  # revocations of this worker's partitions, its first join's included
        self.busy_s = 0.0
        self.batch_observers: list[BatchObserver] = []
        self._loop_thread = threading.get_native_id()  # built on the thread that runs the batch loop

    async def on_batch(
        self, records: Mapping[Any, list[Any]], positions: Mapping[Any, int], fetched: Any
    ) -> bool:
        """Process one fetch (transport.BatchHandler); False if it was fetched around a rebalance."""
        if self.ready is not None and records:
            await self._wait_ready()
        # Shielded: Faust cancels its fetcher on rebalance and shutdown, and a batch whose records were
        # only partly handed to the producer would leave state ahead of what the changelog holds.
        return await asyncio.shield(self._locked_batch(records, positions, fetched))

    async def _locked_batch(
        self, records: Mapping[Any, list[Any]], positions: Mapping[Any, int], fetched: Any
    ) -> bool:
        async with self.lock:
            if self.delivery.failure is not None or not self._still_current(fetched):
                self.batches_dropped += 1
                return False
            started = time.perf_counter()
            batch: list[Any] = []
            high = self._high
            for tp, recs in records.items():
                seen = high.get(tp, -1)
                if recs[0].offset <= seen:
                    self.records_read_again += sum(1 for r in recs if r.offset <= seen)
                batch.extend(recs)
            if self._in_flight is not None and len(batch) > YIELD_EVERY:
                outs = []
                for i in range(0, len(batch), YIELD_EVERY):
                    outs.extend(self.processor.process(batch[i:i + YIELD_EVERY]))
                    await asyncio.sleep(0)  # the transaction in flight goes on meanwhile
            else:
                outs = self.processor.process(batch)
            processing_s = time.perf_counter() - started
            self.processor.flush_state()
            changelog = self._take_changelog()
            if not await self._finish_in_flight():
                # The last batch's transaction aborted; this one was processed on top of its state.
                self.batches_dropped += 1
                return False
            delivery = self.delivery
            if delivery.transactional:
                # Known before the records are sent, so its transaction takes them first (delivery.py).
                self._processed(records, positions)
            await self._send_all(outs)
            send = delivery.send
            for partition, key, value in changelog:
                await send(self._changelog_topic, key, value, partition)
            if not delivery.transactional:  # after the sends: a checkpoint may run between them
                self._processed(records, positions)
            self.records += len(batch)
            self.batches += 1
            self.busy_s += time.perf_counter() - started
            if self.batch_observers:
                self._observe(batch, processing_s)
            if delivery.transactional:
                self._commit_in_flight()
                if len(batch) < PIPELINED_BATCH:
                    return await self._finish_in_flight()
            return True

    def _processed(self, records: Mapping[Any, list[Any]], positions: Mapping[Any, int]) -> None:
        delivery, high = self.delivery, self._high
        for tp, recs in records.items():
            last = recs[-1].offset
            delivery.processed(tp, max(last + 1, positions.get(tp, 0)))
            if last > high.get(tp, -1):
                high[tp] = last
        for tp, position in positions.items():
            if tp not in records:  # past transaction markers or aborted records only
                delivery.processed(tp, position)

    async def _send_all(self, outs: Iterable[Out]) -> None:
        """Hand records to the producer, in order: a batch's outputs, summaries, dead letters."""
        send = self.delivery.send
        for topic, key, value in outs:
            await send(topic, key, value)

    def _observe(self, batch: list[Any], processing_s: float) -> None:
        for observe in list(self.batch_observers):
            try:
                observe(batch, processing_s)
            except Exception:
                # A metric must not fail a batch whose records are sent already, nor log a traceback
                # per batch: a broken observer is told no more.
                log.exception("batch observer %r failed; it is called no more", observe)
                self.batch_observers.remove(observe)

    def _commit_in_flight(self) -> None:
        """Exactly-once: commit the batch just sent while the next one is processed."""
        task = self._in_flight = asyncio.ensure_future(self.delivery.checkpoint())
        task.add_done_callback(self._on_commit_done)

    def _on_commit_done(self, task: asyncio.Task[bool]) -> None:
        # A transaction that did not commit while no batch came after it is dealt with at once (its
        # state undone, its input read again), not when traffic resumes.
        if task is self._in_flight and (task.cancelled() or task.exception() is not None):
            self._reaping = asyncio.ensure_future(self._reap(task))

    async def _reap(self, task: asyncio.Task[bool]) -> None:
        async with self.lock:
            if task is self._in_flight:
                await self._finish_in_flight()

    async def _finish_in_flight(self) -> bool:
        """Exactly-once: wait for the last batch's transaction. False if it did not commit: its state
        and everything written since are undone (or the worker stops, if it could not even abort)."""
        task, self._in_flight = self._in_flight, None
        if task is None:
            return self.delivery.failure is None
        if await self._outcome(task) is None:
            return False
        if self._state is not None:
            self._state.committed()
        return True

    async def _settled(self) -> bool:
        """Exactly-once: commit what was just sent outside a batch, under the lock; True if offsets
        were committed."""
        if not self.delivery.transactional:
            return False
        return bool(await self._outcome(self.delivery.checkpoint()))

    async def _outcome(self, commit: Awaitable[bool]) -> bool | None:
        """A checkpoint's result, or None if it did not commit (undone, or the worker stopping)."""
        try:
            return await commit
        except TransactionAborted as exc:
            await self._undo(exc)
        except Exception as exc:
            await self._fail(exc)
        return None

    async def _undo(self, exc: TransactionAborted) -> None:
        if self.delivery.failure is not None or self._state is None:
            await self._fail(exc)
            return
        undone = self._state.roll_back()
        self.processor.forget()
        self.rewinds += 1
        self.read_again = True
        log.warning("%s (%d keys undone)", exc, undone)

    async def _fail(self, exc: BaseException) -> None:
        if self._on_failure is None:
            raise exc
        await self._on_failure(exc)

    async def _wait_ready(self) -> None:
        # Decide with the rules in force, not the ones a worker starts with.
        assert self.ready is not None
        try:
            await asyncio.wait_for(self.ready.wait(), self.ready_timeout_s)
        except TimeoutError:
            log.warning(
                "rules and merchant summaries not read within %.0f s; deciding with ruleset %s",
                self.ready_timeout_s, self.processor.rules.ruleset.version,
            )
        self.ready = None

    async def publish_summaries(self) -> None:
        """Send the merchant summaries due (processor.summaries coalesces them)."""
        await self.send_now(self.processor.summaries)

    async def send_now(self, outs: Callable[[], Iterable[Out]]) -> None:
        """Send records made outside a batch (summaries, dead letters of rejected rulesets)."""
        async with self.lock:
            if not await self._finish_in_flight():
                return
            await self._send_all(outs())
            await self._settled()

    async def checkpoint(self) -> bool:
        if not self.delivery.transactional:
            return await self.delivery.checkpoint()  # acks are awaited while batches go on
        async with self.lock:
            return await self._finish_in_flight() and await self._settled()

    async def on_revoked(self, revoked: set[Any]) -> None:
        """Before a rebalance completes: commit what was processed, then drop in-memory state."""
        self.rebalances += 1
        await self._hand_back(revoked)

    async def close(self) -> None:
        """At shutdown: the last checkpoint."""
        await self._hand_back(set())

    async def _hand_back(self, revoked: set[Any]) -> None:
        async with self.lock:
            await self._finish_in_flight()
            await self._send_all(self.processor.summaries())
            await self.delivery.checkpoint()
            self.processor.forget()
            self.delivery.forget(revoked)

    def stats(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "batches": self.batches,
            "records_read_again": self.records_read_again,
            "batches_dropped": self.batches_dropped,
            "rebalances": self.rebalances,
            "rewinds": self.rewinds,
            "busy_s": round(self.busy_s, 3),
            "cpu_wait_s": _rounded(run_queue_wait_s(self._loop_thread)),
            "pending_records": self.delivery.pending,
            "checkpoint_failure": self.delivery.failure,
            **self.delivery.stats.as_dict(),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
