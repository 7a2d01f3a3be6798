"""The at-least-once delivery protocol: what must happen before input offsets may be committed.

Records a batch produces (decisions, alerts, dead letters, forwarded events, changelog writes) are
handed to the producer as the batch is processed, without waiting for the broker. Input offsets are
committed at checkpoints (on an interval, before a rebalance completes, at shutdown), and a checkpoint
commits only after every record produced for the batches it covers is acknowledged:

    1. take the offsets processed so far and the records produced for them (a new epoch begins);
    2. wait for every one of those records to be acknowledged; re-send a failed one (or one still not
       acknowledged after `attempt_timeout_s`) with backoff, and past `max_attempts` raise
       `DeliveryFailed` (the worker stops; the batch is replayed, never skipped);
    3. commit the offsets, only ever forward.

A checkpoint that fails (or is cancelled) is final: the process commits nothing more, not at the next
interval, a rebalance or shutdown, since a later epoch's offsets would skip the failed epoch's input.
The worker stops, and its successor reads that input again.

State (changelog) and outputs may therefore reach the broker in any order; the processor makes replay
safe by re-emitting the stored outcome of an event it already holds. A changelog record sent again is
sent with its key's current value, never the one that failed, so a compacted changelog cannot end on
a value older than one written after it.

Exactly-once (`transactions`, transactions.py) replaces steps 2 and 3: the epoch's records are one
producer transaction, and the offsets are committed in it. The caller then holds one lock around
sending and checkpointing (runner.py), since a transaction holds exactly one epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

log = logging.getLogger(__name__)

TP = tuple[str, int]  # (topic, partition); Faust's and aiokafka's TopicPartition are such tuples


class Producer(Protocol):
    async def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None
    ) -> Awaitable[Any]:
        """Hand one record over; the awaitable is its acknowledgement (appender.py)."""
        ...


class Committer(Protocol):
    async def __call__(self, offsets: Mapping[Any, int]) -> bool:
        """Commit `offsets` (the next offset to read, per partition); False if the group moved on."""
        ...


class Transactions(Protocol):
    """Exactly-once: the producer's transactions (transactions.KafkaTransactions)."""

    async def begin(self) -> None: ...

    async def add_offsets(self, offsets: Mapping[Any, int]) -> None:
        """Add `offsets` (next offset to read per partition) to the open transaction."""
        ...

    async def commit(self) -> None:
        """Commit the open transaction; raises if it did not commit."""
        ...

    async def abort(self) -> None: ...

    async def reset(self) -> None:
        """A new producer in place of one that cannot abort (fenced, fatal error)."""
        ...


# (topic, key, value that failed) -> the value to send again: a changelog key's current value.
Refresh = Callable[[str, bytes | None, bytes | None], bytes | None]


class DeliveryFailed(RuntimeError):
    """A record could not be delivered after every retry: the worker must stop, and its input be replayed."""


class TransactionAborted(DeliveryFailed):
    """Exactly-once: the checkpoint's transaction did not commit and was aborted, so nothing of it is
    visible and no offset moved: undo its state, read its input again, go on (runner.py)."""


class CheckpointFailed(DeliveryFailed):
    """A checkpoint was asked for after an earlier one failed: nothing more may be committed."""


@dataclass(slots=True)
class _Epoch:
    """What one checkpoint covers: the records produced since the previous one, and the offsets."""

    offsets: dict[Any, int] = field(default_factory=dict)
    # (delivery future, topic, key, value, partition) of every record produced in this epoch
    sent: list[tuple[Awaitable[Any], str, bytes | None, bytes | None, int | None]] = field(
        default_factory=list
    )
    # Exactly-once: the offsets added to the transaction before its first record, and that request.
    added: dict[Any, int] | None = None
    adding: asyncio.Future[None] | None = None


@dataclass(slots=True)
class DeliveryStats:
    produced: dict[str, int] = field(default_factory=dict)  # records per topic
    checkpoints: int = 0
    commits_refused: int = 0  # the group had rebalanced: those offsets are read again
    resends: int = 0
    behind_committed: int = 0  # processed offsets below the committed one: not committed again
    last_checkpoint_ms: float = 0.0  # wall time the last checkpoint took (acks + commit)
    transactions_aborted: int = 0  # exactly-once: undone and read again
    # Exactly-once: wall time of the committed transactions' phases, summed (ms): from the checkpoint
    # until every record was acknowledged, then until the offsets were in, then until it committed.
    transaction_ms: dict[str, float] = field(
        default_factory=lambda: {"acks": 0.0, "offsets": 0.0, "commit": 0.0}
    )

    def as_dict(self) -> dict[str, Any]:
        return {
            "produced": dict(self.produced),
            "checkpoints": self.checkpoints,
            "commits_refused": self.commits_refused,
            "resends": self.resends,
            "behind_committed": self.behind_committed,
            "last_checkpoint_ms": round(self.last_checkpoint_ms, 3),
            "transactions_aborted": self.transactions_aborted,
            "transaction_ms": {k: round(v, 3) for k, v in self.transaction_ms.items()},
        }


class Delivery:
    """Produces a worker's records without waiting, and commits input offsets at checkpoints."""

    def __init__(
        self,
        producer: Producer,
        commit: Committer,
        *,
        max_attempts: int = 5,
        backoff_s: float = 0.1,
        stall_warning_s: float = 10.0,
        attempt_timeout_s: float = math.inf,
        transactions: Transactions | None = None,
        refresh: Refresh | None = None,
    ) -> None:
        self._producer = producer
        self._commit = commit
        self._txn = transactions
        self._in_txn = False
        self._refresh = refresh
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.stall_warning_s = stall_warning_s
        # The producer fails a record it cannot deliver in its request timeout, but a record already
        # written to a broker that then stalls can wait for its answer far longer: past this deadline
        # it counts as failed and is sent again (a duplicate at worst, which replay allows).
        self.attempt_timeout_s = attempt_timeout_s
        self._epoch = _Epoch()
        self._committed: dict[Any, int] = {}
        self._lock = asyncio.Lock()  # one checkpoint at a time, in epoch order
        self.stats = DeliveryStats()
        # Why a checkpoint failed, once one has: from then on this process commits nothing.
        self.failure: str | None = None
        self._aborted_in_row = 0  # transactions aborted since the last commit

    # -- while processing
    async def send(
        self,
        topic: str,
        key: str | bytes | None,
        value: dict[str, Any] | bytes | None,
        partition: int | None = None,
    ) -> None:
        """Hand one record to the producer; `None` as value is a tombstone. Does not wait for the broker."""
        if isinstance(key, str):
            key = key.encode()
        if value is not None and not isinstance(value, bytes):
            value = orjson.dumps(value)
        if self._txn is not None and not self._in_txn:
            await self._begin()
        fut = await self._producer.send(topic, key, value, partition)
        self._epoch.sent.append((fut, topic, key, value, partition))
        produced = self.stats.produced
        produced[topic] = produced.get(topic, 0) + 1

    def processed(self, tp: Any, next_offset: int) -> None:
        """Input up to `next_offset` (exclusive) of `tp` is processed and its records are sent."""
        self._epoch.offsets[tp] = next_offset

    @property
    def transactional(self) -> bool:
        """Exactly-once: sends and checkpoints must not interleave (the module docstring)."""
        return self._txn is not None

    @property
    def pending(self) -> int:
        """Records produced since the last checkpoint began."""
        return len(self._epoch.sent)

    def forget(self, tps: set[Any]) -> None:
        """Drop what is known of partitions this worker no longer owns (after a checkpoint)."""
        for tp in tps:
            self._committed.pop(tp, None)
            self._epoch.offsets.pop(tp, None)

    # -- checkpoints
    async def checkpoint(self) -> bool:
        """Steps 1-3 of the module docstring; True if offsets were committed.

        Raises `DeliveryFailed` if the epoch's records were not all delivered, and `CheckpointFailed`
        for every checkpoint after a failed (or cancelled) one.
        """
        async with self._lock:
            if self.failure is not None:
                raise CheckpointFailed(
                    f"not committing: an earlier checkpoint failed ({self.failure}); "
                    "the input from there on is read again after a restart"
                )
            try:
                committed = await self._checkpoint()
            except TransactionAborted as exc:
                self._aborted_in_row += 1
                self.stats.transactions_aborted += 1
                if self._aborted_in_row > self.max_attempts:  # it will not get better by itself
                    self.failure = f"{self._aborted_in_row} transactions aborted in a row: {one_line(exc)}"
                raise
            except BaseException as exc:  # cancelled too: that epoch's records are not known delivered
                self.failure = one_line(exc)
                raise
            return committed

    async def _checkpoint(self) -> bool:
        epoch, self._epoch = self._epoch, _Epoch()  # 1
        if not epoch.sent and not epoch.offsets:
            return False
        started = time.monotonic()
        if self._txn is not None:
            return await self._commit_transaction(epoch, started)
        await self._acknowledged(epoch)  # 2
        offsets = self._growing(epoch.offsets)
        committed = False
        if offsets:
            committed = await self._commit(offsets)  # 3
            if committed:
                self._committed.update(offsets)
            else:
                self.stats.commits_refused += 1
        self.stats.checkpoints += 1
        self.stats.last_checkpoint_ms = (time.monotonic() - started) * 1000
        return committed

    async def _begin(self) -> None:
        assert self._txn is not None
        await self._txn.begin()
        self._in_txn = True
        epoch = self._epoch
        offsets = self._growing(epoch.offsets)
        if offsets:
            # The offsets join the transaction before its records: Apache Kafka checks each produce
            # with the transaction coordinator (KIP-890), which refuses it while it writes another
            # change of the transaction (adding the offsets' group), and each refusal cost a retry
            # (0.3-1.0 a commit at 1,000 payments/s, 5 ms each; none since). A failure is the
            # transaction's, raised at its commit (which aborts it).
            epoch.added, epoch.adding = offsets, asyncio.ensure_future(self._txn.add_offsets(offsets))
            await asyncio.wait([epoch.adding])

    async def _commit_transaction(self, epoch: _Epoch, started: float) -> bool:
        """Exactly-once steps 2-3: the epoch's records and its offsets commit as one transaction."""
        assert self._txn is not None
        offsets = self._growing(epoch.offsets)
        if not self._in_txn:
            if not offsets:
                return False
            await self._begin()  # offsets alone (input past transaction markers)
        self._in_txn = False  # whatever happens next, this transaction is over
        # The offsets join the transaction while its records are still on their way (one round trip
        # less per commit), unless they did before its first record; they count only if it commits.
        adding = epoch.adding
        if offsets and offsets != epoch.added:
            adding = asyncio.ensure_future(self._txn.add_offsets(offsets))
            if epoch.adding is not None:
                adding = asyncio.ensure_future(_both(epoch.adding, adding))
        try:
            # Every record written first: aiokafka commits a transaction even when one of its batches
            # failed for good (a record too large for its topic), and its offsets would skip the input.
            await self._wait_all([s[0] for s in epoch.sent])
            failed = next((f for f, *_ in epoch.sent if _failure(f) is not None), None)
            if failed is not None:
                raise DeliveryFailed(
                    f"a record was not delivered ({_failure(failed)!r}): its transaction is aborted; "
                    "stopping so the input is read again"
                )
            acked = time.monotonic()
            if adding is not None:
                await adding
            added = time.monotonic()
            await self._txn.commit()
        except Exception as exc:
            await _settle(adding)
            if await self._aborted():
                raise TransactionAborted(
                    f"transaction aborted ({one_line(exc)}): its state is undone and its input read "
                    "again from the committed offsets"
                ) from exc
            raise DeliveryFailed(
                f"transaction not committed and not aborted ({one_line(exc)}): stopping so the input "
                "is read again"
            ) from exc
        except BaseException:
            await _settle(adding)
            await self._aborted()
            raise
        self._committed.update(offsets)
        # Only a commit ends a run of aborts: an empty checkpoint between them says nothing.
        self._aborted_in_row = 0
        done = time.monotonic()
        phases = self.stats.transaction_ms
        phases["acks"] += (acked - started) * 1000
        phases["offsets"] += (added - acked) * 1000
        phases["commit"] += (done - added) * 1000
        self.stats.checkpoints += 1
        self.stats.last_checkpoint_ms = (done - started) * 1000
        return bool(offsets)

    async def _aborted(self) -> bool:
        """Abort the open transaction, or replace a producer that cannot (its transaction then ends at
        the new one's InitProducerId); False if neither worked (the broker aborts it at its timeout)."""
        assert self._txn is not None
        try:
            await asyncio.wait_for(self._txn.abort(), 5.0)
            return True
        except Exception as exc:
            log.warning("could not abort the failed transaction (%r); replacing the producer", exc)
        try:
            await asyncio.wait_for(self._txn.reset(), 90.0)
            return True
        except Exception as exc:
            log.warning("could not replace the producer (%r)", exc)
            return False

    def _growing(self, offsets: Mapping[Any, int]) -> dict[Any, int]:
        # Offsets only grow. Input can be read again below the committed offset (a seek to the
        # committed offsets raced with a commit still in flight); its records were processed and
        # acknowledged already, so that offset is not committed again, only counted.
        out: dict[Any, int] = {}
        for tp, offset in offsets.items():
            before = self._committed.get(tp)
            if before is not None and offset < before:
                self.stats.behind_committed += 1
            elif before != offset:
                out[tp] = offset
        return out

    async def _acknowledged(self, epoch: _Epoch) -> None:
        """Wait until every record of `epoch` is acknowledged, re-sending failures with backoff."""
        todo = epoch.sent
        attempt = 1
        while todo:
            await self._wait_all([s[0] for s in todo])
            failed = [s for s in todo if _failure(s[0]) is not None]
            if not failed:
                return
            first = _failure(failed[0][0])
            if attempt >= self.max_attempts:
                raise DeliveryFailed(
                    f"{len(failed)} records (first to {failed[0][1]}) not delivered after "
                    f"{attempt} attempts: {first!r}; stopping so the input is read again"
                ) from first
            delay = self.backoff_s * 2 ** (attempt - 1)
            log.warning(
                "%d records not delivered (%r); sending again in %.1f s (attempt %d of %d)",
                len(failed), first, delay, attempt + 1, self.max_attempts,
            )
            await asyncio.sleep(delay)
            attempt += 1
            todo = []
            for _, topic, key, value, partition in failed:
                if self._refresh is not None:
                    value = self._refresh(topic, key, value)
                fut = await self._producer.send(topic, key, value, partition)
                todo.append((fut, topic, key, value, partition))
            self.stats.resends += len(todo)

    async def _wait_all(self, futures: list[Awaitable[Any]]) -> None:
        # Most records of an epoch are acknowledged by its checkpoint: only the rest are waited on
        # (asyncio.wait registers a callback on every future it is given).
        futures = [f for f in futures if not f.done()]  # type: ignore[attr-defined]
        deadline = time.monotonic() + self.attempt_timeout_s
        while futures:
            left = deadline - time.monotonic()
            if left <= 0:
                for f in futures:
                    # Its answer may still come; nobody will read it (the record is sent again).
                    f.add_done_callback(_consume)  # type: ignore[attr-defined]
                return
            timeout = min(self.stall_warning_s, left)
            _, waiting = await asyncio.wait(futures, timeout=timeout)  # type: ignore[arg-type]
            futures = list(waiting)
            if waiting and timeout == self.stall_warning_s:
                log.warning(
                    "still waiting after %.0f s for the broker to acknowledge %d records",
                    self.stall_warning_s, len(waiting),
                )


async def _both(first: asyncio.Future[None], second: asyncio.Future[None]) -> None:
    try:
        await first
    finally:
        await second


def _failure(fut: Any) -> BaseException | None:
    """Why a record's delivery failed, or None if it was acknowledged."""
    if not fut.done():
        return TimeoutError("no acknowledgement before the attempt's deadline")
    return fut.exception()


async def _settle(task: asyncio.Future[Any] | None) -> None:
    """Let an offsets request finish (or fail) before the transaction it belongs to is aborted."""
    if task is not None:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(task), 5.0)
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: its failure is the transaction's, reported already


def one_line(exc: BaseException, limit: int = 400) -> str:
    """The reason a worker stops, as one log line (and /health's `reason`)."""
    text = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _consume(fut: Any) -> None:
    if not fut.cancelled():
        fut.exception()  # marks it retrieved: no "exception was never retrieved" at exit
