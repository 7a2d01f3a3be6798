"""The worker's core, free of Faust: a batch of input messages in, state updated, records to send out.

Payments, chargebacks and user repayments arrive keyed by user and update user state; orders and
merchant repayments arrive keyed by merchant. Payments and chargebacks also matter to the merchant, so
they are forwarded, keyed by merchant, on an internal topic that comes back through this processor on
the worker that owns the merchant.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from .decisions import decision_record
from .events import Chargeback, InvalidRecord, Order, Payment, Repayment, Validator
from .features.entities import (
    M_CANCELLED,
    M_CHARGEBACK,
    M_FULFILLED,
    M_PAYMENT,
    M_PLACED,
    M_REFUNDED,
    M_REPAYMENT,
    U_CHARGEBACK,
    U_PAYMENT,
    U_REPAYMENT,
    MerchantState,
    UserState,
    WindowConfig,
)
from .settings import Settings
from .sinks import dead_letter_value
from .state.store import KV, EntityStore, HeldEvent
from .topics import merchant_events_topic

ORDER_SERIES = {
    "placed": M_PLACED,
    "fulfilled": M_FULFILLED,
    "refunded": M_REFUNDED,
    "cancelled": M_CANCELLED,
}


class Message(NamedTuple):
    """The part of a consumed Kafka record the processor needs."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


class Out(NamedTuple):
    topic: str
    key: bytes | str | None
    value: dict[str, Any] | bytes


@dataclass(slots=True)
class Verdict:
    action: str
    score: float
    reasons: list[str]
    rules_version: str
    alerts: list[Any] = field(default_factory=list)


# (payment, user features, merchant features or None) -> verdict
Decider = Callable[[Payment, dict[str, float], dict[str, float] | None], Verdict]


def velocity_decider(limit: int) -> Decider:
    """The walking skeleton's single rule: decline a burst of payments within 5 minutes."""
    version = f"builtin-velocity-{limit}"

    def decide(p: Payment, user: dict[str, float], merchant: dict[str, float] | None) -> Verdict:
        if user.get("payment_count_5m", 0) > limit:
            return Verdict("decline", 1.0, ["VELOCITY_5M"], version)
        return Verdict("approve", 0.0, [], version)

    return decide


@dataclass
class Counters:
    """What the processor has seen, by kind; read by the CLI summary and (later) the metrics."""

    consumed: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    duplicates: int = 0
    decisions: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "consumed": dict(self.consumed),
            "dead_letters": self.dead_letters,
            "duplicates": self.duplicates,
            "decisions": dict(self.decisions),
        }

    def with_state(self, *stores: Any) -> dict[str, Any]:
        """The counters plus the state stores' counts of late and too-old events."""
        out = self.as_dict()
        out["late_events"] = sum(s.late_events for s in stores)
        out["too_old_events"] = sum(s.too_old_events for s in stores)
        return out


class Processor:
    """Turns batches of input messages into state changes and outgoing records."""

    def __init__(self, settings: Settings, kv: KV, decider: Decider | None = None) -> None:
        self.settings = settings
        self.cfg = WindowConfig(
            windows=settings.windows, allowed_lateness_ms=settings.allowed_lateness_ms
        )
        self.users: EntityStore[UserState] = EntityStore(
            b"u", kv, lambda: UserState(self.cfg), self.cfg.retention_ms
        )
        self.merchants: EntityStore[MerchantState] = EntityStore(
            b"m", kv, lambda: MerchantState(self.cfg), self.cfg.retention_ms
        )
        self.decide = decider or velocity_decider(settings.velocity_5m_max)
        self.validator = Validator(settings.currencies, settings.max_future_skew_ms)
        self.counters = Counters()
        t = settings.topic
        self.t_decisions = t("risk-decisions")
        self.t_alerts = t("fraud-alerts")
        self.t_dead = t("dead-letters")
        self.t_merchant_events = merchant_events_topic(settings)
        # Deployed topic name -> (contract name, handler).
        self._routes: dict[str, tuple[str, Callable[[Message, Any, list[Out]], None]]] = {
            t("payments"): ("payments", self._payment),
            t("orders"): ("orders", self._order),
            t("repayments"): ("repayments", self._repayment),
            t("chargebacks"): ("chargebacks", self._chargeback),
        }
        self._parsers = {name: self.validator.parser_for(name) for name, _ in self._routes.values()}

    @property
    def input_topics(self) -> list[str]:
        return [*self._routes, self.t_merchant_events]

    def process(self, batch: Iterable[Message], now_ms: int | None = None) -> list[Out]:
        """Apply a batch; return what to send. Call `flush_state()` after the outputs are queued."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        out: list[Out] = []
        consumed = self.counters.consumed
        for m in batch:
            consumed[m.topic] = consumed.get(m.topic, 0) + 1
            if m.topic == self.t_merchant_events:
                self._merchant_event(m)
                continue
            name, handler = self._routes[m.topic]
            try:
                record = self._parsers[name](m.key, m.value, now)
            except InvalidRecord as exc:
                self._dead_letter(
                    m, f"{name} record at partition {m.partition} offset {m.offset}: {exc}", out
                )
                continue
            handler(m, record, out)
        return out

    def flush_state(self) -> int:
        return self.users.flush() + self.merchants.flush()

    # -- per topic
    def _dead_letter(self, m: Message, error: str, out: list[Out]) -> None:
        self.counters.dead_letters += 1
        out.append(
            Out(
                self.t_dead,
                m.key,
                dead_letter_value(m.topic, m.partition, m.offset, error, m.value),
            )
        )

    def _hold(self, store: EntityStore[Any], entity_id: str, partition: int, held: HeldEvent) -> Any:
        """Apply and persist one event to its entity; the entity, or None for a duplicate."""
        slot = store.slot(entity_id, partition)
        if not store.add(slot, held):
            self.counters.duplicates += 1
            return None
        store.expire(slot, slot.entity.latest)
        return slot.entity

    def _forward(self, out: list[Out], eid: str, series: int, ts: int, amount: int, merchant: str) -> None:
        """Send an event of the user side to the worker that owns its merchant (see _merchant_event)."""
        out.append(Out(self.t_merchant_events, merchant, orjson.dumps([eid, series, ts, amount, merchant])))

    def _payment(self, m: Message, p: Payment, out: list[Out]) -> None:
        eid = "p" + p.event_id
        held = HeldEvent(eid, U_PAYMENT, p.ts, p.amount, (p.merchant_id, p.device_id))
        user = self._hold(self.users, p.user_id, m.partition, held)
        if user is None:
            return
        merchant = self.merchants.get(p.merchant_id)
        verdict = self.decide(p, user.features(), merchant.features() if merchant else None)
        d = self.counters.decisions
        d[verdict.action] = d.get(verdict.action, 0) + 1
        record = decision_record(p, verdict.action, verdict.score, verdict.reasons, verdict.rules_version)
        out.append(Out(self.t_decisions, p.user_id, record))
        self._forward(out, eid, M_PAYMENT, p.ts, p.amount, p.merchant_id)

    def _chargeback(self, m: Message, c: Chargeback, out: list[Out]) -> None:
        eid = "c" + c.event_id
        if self._hold(self.users, c.user_id, m.partition, HeldEvent(eid, U_CHARGEBACK, c.ts, c.amount)):
            self._forward(out, eid, M_CHARGEBACK, c.ts, c.amount, c.merchant_id)

    def _repayment(self, m: Message, r: Repayment, out: list[Out]) -> None:
        eid = "r" + r.event_id
        if r.account_type == "user":
            store, held = self.users, HeldEvent(eid, U_REPAYMENT, r.ts, int(r.on_time))
        else:
            store, held = self.merchants, HeldEvent(eid, M_REPAYMENT, r.ts, r.amount)
        self._hold(store, r.account_id, m.partition, held)

    def _order(self, m: Message, o: Order, out: list[Out]) -> None:
        cats = (o.user_id,) if o.status == "placed" else ()
        held = HeldEvent("o" + o.event_id, ORDER_SERIES[o.status], o.ts, o.amount, cats)
        self._hold(self.merchants, o.merchant_id, m.partition, held)

    def _merchant_event(self, m: Message) -> None:
        # Written by _forward above, so trusted: [id, series, ts, amount, merchant].
        eid, series, ts, amount, merchant_id = orjson.loads(m.value or b"null")[:5]
        self._hold(self.merchants, merchant_id, m.partition, HeldEvent(eid, series, ts, amount))


def messages(events: Iterable[Any]) -> list[Message]:
    """Faust events to processor messages."""
    return [
        Message(
            e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value
        )
        for e in events
    ]
