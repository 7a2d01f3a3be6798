"""The merchant side of the processor: what reaches a merchant's owner, and what it publishes.

Payments and chargebacks are keyed by user, but matter to their merchant too: the user side forwards
them (`_forward`), keyed by merchant, on an internal topic that comes back through the processor on the
worker that owns the merchant (`_merchant_event`), with a decided payment's outcome for the merchant's
last decisions. Orders arrive keyed by merchant. The merchant's owner publishes a risk summary of every
merchant it changed, at most one per merchant per interval (`summaries`), which every worker reads into
its merchant view (merchant_view.py, broadcast.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import orjson

from .events import Order
from .features.entities import M_CANCELLED, M_FULFILLED, M_PLACED, M_REFUNDED, MerchantState
from .merchant_view import encode_summary
from .records import Message, Out
from .state.chunks import HeldEvent

if TYPE_CHECKING:
    from .processor import Processor

ORDER_SERIES = {
    "placed": M_PLACED,
    "fulfilled": M_FULFILLED,
    "refunded": M_REFUNDED,
    "cancelled": M_CANCELLED,
}


class MerchantSide:
    """The Processor's merchant half (a mixin, like alerting.Alerting: it reads the processor's state)."""

    def _forward(
        self: Processor, out: list[Out], eid: str, series: int, ts: int, amount: int, merchant: str,
        user_id: str = "", outcome: list | None = None,
    ) -> None:
        """Send an event of the user side to the worker that owns its merchant (see _merchant_event).

        A decided payment carries its decision for the merchant's last decisions (merchant_decisions.py):
        `outcome` as the payment index stores it, `[offset, action, score, rules_version, *reasons]`."""
        if outcome and self.merchant_decisions.keep:
            row = [eid, series, ts, amount, merchant, user_id, *outcome[1:]]
        else:
            row = [eid, series, ts, amount, merchant]
        out.append(Out(self.t_merchant_events, merchant, orjson.dumps(row)))

    def _order(self: Processor, m: Message, o: Order, out: list[Out]) -> None:
        cats = (o.user_id,) if o.status == "placed" else ()
        held = HeldEvent("o" + o.event_id, ORDER_SERIES[o.status], o.ts, o.amount, cats)
        slot, first = self._hold(self.merchants, o.merchant_id, m.partition, held)
        if self.credit is not None:  # held already (a crash): the order index gets what it lacks
            self.credit.on_order(m.partition, o, slot, out, again=not first, offset=m.offset)

    def _merchant_event(self: Processor, m: Message, out: list[Out]) -> None:
        # Written by _forward above, so trusted: [id, series, ts, amount, merchant, *decision].
        forwarded = orjson.loads(m.value or b"null")
        eid, series, ts, amount, merchant_id = forwarded[:5]
        slot, first = self._hold(self.merchants, merchant_id, m.partition, HeldEvent(eid, series, ts, amount))
        if len(forwarded) > 5:  # also when held already: the list dedupes by event id itself
            self.merchant_decisions.add(m.partition, merchant_id, forwarded, m.value)
        if first and self.credit is not None:
            self.credit.on_forwarded(m.partition, merchant_id, eid, series, slot, out)

    def _queue_summaries(self: Processor) -> None:
        """The merchants the batch changed wait for the next summaries (their rules were alerted per
        event, in _merchant_alerts)."""
        self._unpublished.update(self._touched)
        self._touched.clear()

    def summaries(self: Processor) -> list[Out]:
        """One summary of each merchant changed since the last call (the worker calls this on an
        interval, so a busy merchant costs one record per interval, not one per batch)."""
        schema = self.merchant_view.schema
        out = [
            Out(self.t_merchant_risk, merchant_id,
                encode_summary(schema, merchant.latest, merchant.take_features()))
            for merchant_id, merchant in self._changed_merchants()
        ]
        self._unpublished.clear()
        return out

    def view_summaries(self: Processor) -> None:
        """`summaries()` applied to this processor's own view, with no record in between (run_local: a
        whole deployment in one process, where no other worker reads them)."""
        view = self.merchant_view
        for merchant_id, merchant in self._changed_merchants():
            view.put_features(merchant_id, merchant.take_features())
        self._unpublished.clear()

    def _changed_merchants(self: Processor) -> Iterator[tuple[str, MerchantState]]:
        # A merchant evicted from memory since and touched again has a new slot: publish that one.
        current = self.merchants.slots
        for merchant_id, old in self._unpublished.items():
            yield merchant_id, current.get(merchant_id, old).entity
