"""The merchant side of the processor: what reaches a merchant's owner, and what it publishes.

Payments and chargebacks are keyed by user, but matter to their merchant too: the user side forwards
them (`MerchantSide.forward`), keyed by merchant, on an internal topic that comes back through the
processor on the worker that owns the merchant (`MerchantSide.event`), with a decided payment's outcome
for the merchant's last decisions. Orders and advances arrive keyed by merchant, on the partition of the
merchant's state, so they need no forwarding: the worker that reads them owns the merchant. The
merchant's owner publishes a risk summary of every merchant it changed, at most one per merchant per
interval (`summaries`), which every worker reads into its merchant view (merchant_view.py,
broadcast.py).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator

import orjson

from ..credit.book import CreditBook
from ..features.entities import (
    M_CANCELLED,
    M_CHARGEBACK,
    M_FULFILLED,
    M_PAYMENT,
    M_PLACED,
    M_REFUNDED,
    MerchantState,
)
from ..state.chunks import HeldEvent
from ..state.merchant_decisions import MerchantDecisions
from ..state.store import EntityStore, Slot
from .alerting import Alerting
from .decisions import advance_decision_record
from .events import Advance, InvalidRecord, Order, Validator, check_id, shown
from .merchant_view import MerchantView, encode_summary
from .records import FORWARDED_BARE, FORWARDED_DECIDED, Counters, Forwarded, Message, Out, Outcome

log = logging.getLogger(__name__)

ORDER_SERIES = {
    "placed": M_PLACED,
    "fulfilled": M_FULFILLED,
    "refunded": M_REFUNDED,
    "cancelled": M_CANCELLED,
}

# The reason of every advance's decline when the deployment runs without credit (STREAMRISK_CREDIT=off).
CREDIT_OFF = "CREDIT_OFF"

# A forwarded event's id is its kind's letter and the input event's id (processor.py); only payments
# and chargebacks are forwarded.
FORWARDED_SERIES = {"p": M_PAYMENT, "c": M_CHARGEBACK}
DECISION_ACTIONS = frozenset({"approve", "review", "decline"})


def read_forwarded(validator: Validator, key: bytes | None, value: bytes | None, now_ms: int) -> Forwarded:
    """A record of the internal merchant-events topic as `MerchantSide.forward` writes it, checked like
    an input record; InvalidRecord with the reason otherwise.

    Only workers write this topic, but anyone who can write to the broker can too, and what a record
    holds reaches state: its time moves its partition's clock (which the sweep expires state by), its
    id is remembered as held, its decision is served by the HTTP API. So its time obeys the skew rule
    of the inputs (a forwarded time was checked against the forwarding worker's clock already, so only
    clock drift between workers beyond the skew could reject a worker's own record), its ids follow
    the id rules, and its key must be its merchant.
    """
    row = validator.json_value(key, value, "a forwarded event")
    if type(row) is not list or not (len(row) == FORWARDED_BARE or len(row) >= FORWARDED_DECIDED):
        what = f"{len(row)} items" if type(row) is list else type(row).__name__
        raise InvalidRecord(
            "value must be a JSON array [event_id, series, ts, amount, merchant_id] or with "
            f"[user_id, action, score, rules_version, *reasons] after it (got {what})"
        )
    f = Forwarded.of(row)
    eid, series, ts, amount, merchant_id = f.event_id, f.series, f.ts, f.amount, f.merchant_id
    expected = FORWARDED_SERIES.get(eid[:1]) if type(eid) is str else None
    if expected is None:
        raise InvalidRecord(
            f"event_id must be 'p' or 'c' and the payment's or chargeback's event id (got {shown(eid)})"
        )
    check_id("event_id", eid[1:])
    if type(series) is not int or series != expected:
        raise InvalidRecord(f"series of event {shown(eid)} must be {expected} (got {shown(series)})")
    validator.event_time("ts", ts, now_ms)
    if type(amount) is not int or not 0 < amount <= validator.max_amount_minor:
        top = validator.max_amount_minor
        raise InvalidRecord(f"amount must be an integer of minor units in 1..{top} (got {shown(amount)})")
    check_id("merchant_id", merchant_id)
    if key is None or key != merchant_id.encode():
        raise InvalidRecord(f"message key must be the merchant_id {shown(merchant_id)} (got {shown(key)})")
    if f.outcome is not None:
        _check_decision(f.user_id, f.outcome, series)
    return f


def _check_decision(user_id: str, outcome: Outcome, series: int) -> None:
    action, score = outcome.action, outcome.score
    if series != M_PAYMENT:
        raise InvalidRecord("only a payment carries a decision")
    check_id("user_id", user_id)
    if type(action) is not str or action not in DECISION_ACTIONS:
        allowed = ", ".join(sorted(DECISION_ACTIONS))
        raise InvalidRecord(f"action must be one of {allowed} (got {shown(action)})")
    if type(score) not in (int, float) or not (math.isfinite(score) and 0 <= score <= 1):
        raise InvalidRecord(f"score must be a number in 0..1 (got {shown(score)})")
    # Not bounded here beyond the record's size: a ruleset's version has no length limit.
    for name, v in (("rules_version", outcome.rules_version), *(("reason", r) for r in outcome.reasons)):
        if type(v) is not str or not v:
            raise InvalidRecord(f"{name} must be a non-empty string (got {shown(v)})")


class MerchantSide:
    """The processor's merchant half: forwards the user side's events to the merchant's owner, holds
    what reaches it, and publishes the risk summaries of the merchants it changed. Every output goes
    to the `out` it is given."""

    def __init__(
        self,
        merchants: EntityStore[MerchantState],
        decisions: MerchantDecisions,
        view: MerchantView,
        alerting: Alerting,
        credit: CreditBook | None,
        counters: Counters,
        tick: Callable[[int, int], None],
        events_topic: str,
        risk_topic: str,
        advance_topic: str = "advance-decisions",
    ) -> None:
        """`tick(partition, ts)`: the processor's, called for every merchant event that reaches
        state; `events_topic` and `risk_topic` are the internal merchant-events and merchant-risk,
        `advance_topic` the contract's advance-decisions (for declines without credit)."""
        self.merchants = merchants
        self.decisions = decisions
        self.view = view
        self.alerting = alerting
        self.credit = credit
        self.counters = counters
        self.tick = tick
        self.events_topic = events_topic
        self.risk_topic = risk_topic
        self.advance_topic = advance_topic
        # Merchants the current batch changed, and those changed since the last summaries were
        # published.
        self.touched: dict[str, Slot[MerchantState]] = {}
        self.unpublished: dict[str, Slot[MerchantState]] = {}
        # Merchants the sweep removed since the last summaries: their summaries are tombstoned.
        self.swept: set[str] = set()
        self.tombstoned = 0
        merchants.on_swept = self._merchant_swept

    def forward(
        self, out: list[Out], eid: str, series: int, ts: int, amount: int, merchant: str,
        user_id: str = "", outcome: Outcome | None = None,
    ) -> None:
        """Send an event of the user side to the worker that owns its merchant (see `event`).

        A decided payment carries its user and `outcome` for the merchant's last decisions
        (merchant_decisions.py), unless the merchant side keeps none."""
        if outcome is not None and self.decisions.keep:
            f = Forwarded(eid, series, ts, amount, merchant, user_id, outcome)
        else:
            f = Forwarded(eid, series, ts, amount, merchant)
        out.append(Out(self.events_topic, merchant, orjson.dumps(f.row())))

    def hold(
        self, out: list[Out], merchant_id: str, partition: int, held: HeldEvent
    ) -> tuple[Slot[MerchantState], bool]:
        """Apply and persist one event to its merchant, and alert on the merchant-only rules; its slot,
        and False if it was held already."""
        self.tick(partition, held.ts)
        merchants = self.merchants
        slot = merchants.slot(merchant_id, partition)
        if not merchants.add(slot, held):
            self.counters.duplicates += 1
            return slot, False
        merchants.expire(slot, slot.entity.latest)
        self.touched[merchant_id] = slot
        self.alerting.merchant_event(out, merchant_id, slot, held)
        return slot, True

    def order(self, m: Message, o: Order, out: list[Out]) -> None:
        cats = (o.user_id,) if o.status == "placed" else ()
        held = HeldEvent("o" + o.event_id, ORDER_SERIES[o.status], o.ts, o.amount, cats)
        slot, first = self.hold(out, o.merchant_id, m.partition, held)
        if self.credit is not None:  # held already (a crash): the order index gets what it lacks
            self.credit.on_order(m.partition, o, slot, out, again=not first, offset=m.offset)

    def advance(self, m: Message, a: Advance, out: list[Out]) -> None:
        """A merchant's draw on its credit line, decided by the credit book (`CreditBook.on_advance`)
        against its available line, once per advance id. It is not held in the merchant's windows (no
        feature reads it), but it moves the partition's clock like any event that reaches state."""
        self.tick(m.partition, a.ts)
        if self.credit is None:  # no line to draw on: declined, and nothing kept
            record = advance_decision_record(a, False, (CREDIT_OFF,), 0, 0, "")
            out.append(Out(self.advance_topic, a.merchant_id, record))
        elif not self.credit.on_advance(m.partition, a, m.offset, out):
            self.counters.duplicates += 1

    def event(self, m: Message, f: Forwarded, out: list[Out]) -> None:
        """Apply a forwarded event (`f`: the record as read_forwarded checked it)."""
        eid, merchant_id = f.event_id, f.merchant_id
        slot, first = self.hold(out, merchant_id, m.partition, HeldEvent(eid, f.series, f.ts, f.amount))
        if f.outcome is not None:  # also when held already: the list dedupes by event id itself
            raw = m.value or b""
            # Kept as the bytes that came, one per line (merchant_decisions.py): ours are one line;
            # a record written otherwise is kept as we would have written it.
            if b"\n" in raw:
                raw = orjson.dumps(f.row())
            self.decisions.add(m.partition, merchant_id, eid, f.ts, raw)
        if self.credit is not None:  # held already (a crash): the account gets what it lacks
            self.credit.on_forwarded(m.partition, merchant_id, eid, f.series, f.ts, slot, out,
                                     again=not first)

    def end_batch(self) -> None:
        """The merchants the batch changed wait for the next summaries (their rules were alerted per
        event, in `hold`)."""
        if self.touched:
            self.unpublished.update(self.touched)
            self.touched.clear()

    def summaries(self) -> list[Out]:
        """One summary of each merchant changed since the last call (the worker calls this on an
        interval, so a busy merchant costs one record per interval, not one per batch), and a
        tombstone for each merchant the sweep removed since (every worker's view then drops it)."""
        schema = self.view.schema
        swept = self._take_swept()
        out = [
            Out(self.risk_topic, merchant_id,
                encode_summary(schema, merchant.latest, merchant.take_features()))
            for merchant_id, merchant in self._changed_merchants()
        ]
        self.unpublished.clear()
        out.extend(Out(self.risk_topic, merchant_id, None) for merchant_id in swept)
        return out

    def view_summaries(self) -> None:
        """`summaries()` applied to this processor's own view, with no record in between (run_local: a
        whole deployment in one process, where no other worker reads them)."""
        view = self.view
        for merchant_id in self._take_swept():
            view.put(merchant_id, None)
        for merchant_id, merchant in self._changed_merchants():
            view.put_features(merchant_id, merchant.take_features())
        self.unpublished.clear()

    def reload(self, merchant_id: str, partition: int) -> None:
        """The processor dropped a merchant from memory (a record whose processing raised): one
        waiting to be summarised points at the dropped slot, so reload it, and what it publishes is
        the persisted state."""
        waiting = [d for d in (self.touched, self.unpublished) if merchant_id in d]
        if not waiting:
            return
        try:
            slot = self.merchants.slot(merchant_id, partition)
        except Exception:
            log.exception("merchant %r could not be rebuilt from the table", merchant_id[:100])
            for d in waiting:
                del d[merchant_id]
            return
        for d in waiting:
            d[merchant_id] = slot

    def forget(self) -> None:
        """After a rebalance (the processor's `forget`)."""
        self.touched.clear()
        self.unpublished.clear()
        self.swept.clear()

    def _merchant_swept(self, merchant_id: str) -> None:
        """The sweep removed a merchant's state (idle past the retention): its summary goes too."""
        self.swept.add(merchant_id)
        self.touched.pop(merchant_id, None)
        self.unpublished.pop(merchant_id, None)

    def _take_swept(self) -> list[str]:
        """Merchants swept since the last summaries and not changed again since (those get a summary:
        a sweep after the change takes the merchant out of `unpublished`)."""
        swept = [m for m in self.swept if m not in self.unpublished]
        self.swept.clear()
        self.tombstoned += len(swept)
        return swept

    def _changed_merchants(self) -> Iterator[tuple[str, MerchantState]]:
        # A merchant evicted from memory since and touched again has a new slot: publish that one.
        current = self.merchants.slots
        for merchant_id, old in self.unpublished.items():
            yield merchant_id, current.get(merchant_id, old).entity
