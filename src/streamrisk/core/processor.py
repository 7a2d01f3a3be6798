"""The worker's core, free of Faust: a batch of input messages in, state updated, records to send out.

Payments, chargebacks and user repayments arrive keyed by user and update user state; orders, advances
and merchant repayments arrive keyed by merchant. Payments and chargebacks also matter to the merchant,
so they are forwarded, keyed by merchant, on an internal topic that comes back through this processor on
the worker that owns the merchant.

A payment's decision needs both sides: its user's features (here, same partition) and its merchant's
(owned by whichever worker owns the merchant's partition). The merchant's owner publishes a risk
summary of every merchant it changed, coalesced to at most one per merchant per interval
(`MerchantSide.summaries`, merchant_side.py), on a compacted topic that every worker reads whole
(broadcast.py) into `merchant_view`. Deciding never waits for another worker; the merchant side is as
fresh as the last summary (docs/architecture.md, "Both sides of a payment").

Processing is at-least-once: after a crash a record can be read again against state that holds any
part of it, since a batch's state records (the user's chunks, the payment index, the credit account,
...) reach the changelog independently. Each part is therefore changed once per event id, checked
where it is kept: the entity's held events, the payment index (which also remembers payments for the
dedupe horizon after the user's state forgot them), the credit accounts' draws and applied ids. A
payment read again (same offset) re-emits its stored decision, identical but for `decided_at`, and
completes whatever part of its state is missing; one sent again (another offset) has no second
effect. A payment (with its stored decision) or chargeback held already is forwarded to its merchant
again (the merchant side drops repeats).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from ..credit import credit_book
from ..features.entities import (
    M_CHARGEBACK,
    M_PAYMENT,
    M_REPAYMENT,
    U_CHARGEBACK,
    U_PAYMENT,
    U_REPAYMENT,
    MerchantState,
    UserState,
    WindowConfig,
)
from ..rules import UNKNOWN_MERCHANT, Ruleset, decide
from ..rules.control import RulesControl, initial_ruleset
from ..rules.shadow import ShadowRun
from ..settings import CONTROL_TOPIC, Settings
from ..state import keys
from ..state.alert_gate import AlertGate
from ..state.chunks import HeldEvent
from ..state.early_chargebacks import EarlyChargebacks
from ..state.kv import KV
from ..state.merchant_decisions import MerchantDecisions
from ..state.payment_index import PaymentIndex
from ..state.reviews import ReviewCases
from ..state.store import EntityStore, Slot
from ..state.sweep import PartitionClock, Sweeper, key_partition, memory_stats
from .alerting import Alerting
from .decisions import decision_record
from .events import Chargeback, InvalidRecord, Payment, Repayment, Validator
from .faults import RecordFaults
from .merchant_side import MerchantSide, read_forwarded
from .merchant_view import BoundedMerchantView, DictSummaryStore, MerchantView, SummaryStore
from .partitioning import KeyPlacement
from .reason_class import reason_class
from .records import Counters, Message, Out, Outcome, Record, payment_fields
from .reviews import Resolution, parse_resolution
from .sinks import DEFAULT_RECORD_LIMIT, fitted_dead_letter
from .topic_names import merchant_events_topic, merchant_risk_topic, reviews_topic, shadow_decisions_topic

# Reason codes the processor raises itself (the rules' codes live in the ruleset).
CHARGEBACK = "CHARGEBACK"
UNMATCHED_CHARGEBACK = "UNMATCHED_CHARGEBACK"


class Processor:
    """Turns batches of input messages into state changes and outgoing records."""

    def __init__(
        self, settings: Settings, kv: KV, ruleset: Ruleset | None = None, *, check_partitions: bool = False,
        summary_store: SummaryStore | None = None,
    ) -> None:
        """`check_partitions`: dead-letter input records not on the partition murmur2 gives their key
        (the worker; in-process runs feed every message on partition 0). `summary_store`: where a
        bounded merchant view (`merchant_cache_size` > 0) keeps the raw summaries (default: a dict)."""
        self.settings = settings
        self.cfg = WindowConfig(
            windows=settings.windows, allowed_lateness_ms=settings.allowed_lateness_ms
        )
        # Memory: a budget of entities in memory, and a sweep that expires idle state (state/sweep.py).
        self.clock = clock = PartitionClock(settings.allowed_lateness_ms)
        budget = settings.max_cached_entities
        owner = partial(key_partition, partitions=settings.partitions)
        self.users: EntityStore[UserState] = EntityStore(
            keys.USER, kv, lambda: UserState(self.cfg), self.cfg.retention_ms, max_cached=budget, clock=clock
        )
        self.merchants: EntityStore[MerchantState] = EntityStore(
            keys.MERCHANT, kv, lambda: MerchantState(self.cfg), self.cfg.retention_ms, max_cached=budget,
            clock=clock,
        )
        # Kept for the dedupe horizon, matched by chargebacks for payment_index_ms (payment_index.py).
        self.payment_index = PaymentIndex(
            kv, settings.dedupe_horizon, clock=clock, partition_of=owner, match_ms=settings.payment_index_ms
        )
        self.early_chargebacks = EarlyChargebacks(kv, settings.payment_index_ms, clock, owner)
        self.alert_gate = AlertGate(kv, settings.alert_dedupe_ms, clock, owner)
        self.merchant_decisions = MerchantDecisions(
            kv, settings.merchant_recent_decisions, self.cfg.retention_ms, budget, clock, owner
        )
        self.credit = credit_book(settings, kv, self.merchants, self.cfg.settlement_ms, clock)
        # Payments decided `review`, waiting for an analyst (state/reviews.py).
        self.reviews = ReviewCases(kv, settings.payment_index_ms, clock, owner, getattr(kv, "contents", None))
        # The sweep's handler of each key kind (state/keys.py).
        handlers = {
            keys.USER: self.users.sweep_key, keys.MERCHANT: self.merchants.sweep_key,
            keys.PAYMENT_INDEX: self.payment_index.sweep_key,
            keys.EARLY_CHARGEBACK: self.early_chargebacks.sweep_key,
            keys.ALERT_DEDUPE: self.alert_gate.sweep_key,
            keys.MERCHANT_DECISIONS: self.merchant_decisions.sweep_key,
            keys.REVIEW: self.reviews.sweep_key,
        }
        if self.credit is not None:
            handlers.update(self.credit.sweep_handlers())
        self.sweeper = Sweeper(getattr(kv, "contents", None), handlers)
        self._held = 0  # events held since the last flush: the sweep's work is proportional
        self.rules = RulesControl(ruleset or initial_ruleset(settings.rules_path))
        self.shadow = ShadowRun(shadow_decisions_topic(settings))
        # Merchant id -> its newest published risk features (see the module docstring).
        names = tuple(MerchantState(self.cfg).features())
        self.summaries_read = 0  # records of the summaries topic applied to the view
        self.merchant_view = (
            BoundedMerchantView(names, settings.merchant_cache_size, summary_store or DictSummaryStore())
            if settings.merchant_cache_size > 0 else MerchantView(names)
        )
        self.validator = Validator(
            settings.currencies, settings.max_future_skew_ms, settings.max_amount, settings.max_record_bytes
        )
        self.placement = KeyPlacement(settings.partitions) if check_partitions else None
        self.faults = RecordFaults()
        # The dead-letters topic's max.message.bytes (read by the worker at start): dead letters fit it.
        self.dead_letter_limit = DEFAULT_RECORD_LIMIT
        self.counters = Counters()
        t = settings.topic
        self.t_decisions = t("risk-decisions")
        self.t_alerts = t("fraud-alerts")
        self.t_dead = t("dead-letters")
        self.t_rules = t(CONTROL_TOPIC)
        self.t_merchant_events = merchant_events_topic(settings)
        self.t_merchant_risk = merchant_risk_topic(settings)
        self.t_reviews = reviews_topic(settings)
        # Its parts, with their own state; their outputs go to the `out` they are given.
        self.alerting = Alerting(
            self.alert_gate, self.counters.alerts, self.t_alerts, self.rules, self.merchants, self.credit
        )
        self.merchant_side = MerchantSide(
            self.merchants, self.merchant_decisions, self.merchant_view, self.alerting, self.credit,
            self.counters, self._tick, self.t_merchant_events, self.t_merchant_risk, t("advance-decisions"),
        )
        # Deployed topic name -> (contract name, handler).
        self._routes: dict[str, tuple[str, Callable[[Message, Any, list[Out]], None]]] = {
            t("payments"): ("payments", self._payment),
            t("orders"): ("orders", self.merchant_side.order),
            t("repayments"): ("repayments", self._repayment),
            t("chargebacks"): ("chargebacks", self._chargeback),
            t("advances"): ("advances", self.merchant_side.advance),
        }
        self._parsers = {name: self.validator.parser_for(name) for name, _ in self._routes.values()}

    @property
    def input_topics(self) -> list[str]:
        return [*self._routes, self.t_merchant_events, self.t_reviews]

    @property
    def broadcast_topics(self) -> list[str]:
        """Topics every worker reads whole, from the beginning (see on_broadcast)."""
        return [self.t_rules, self.t_merchant_risk]

    def process(self, batch: Iterable[Record], now_ms: int | None = None) -> list[Out]:
        """Apply a batch; return what to send. Call `flush_state()` after the outputs are queued."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        out: list[Out] = []
        merchant_event = self.merchant_side.event
        consumed = self.counters.consumed
        for m in batch:
            consumed[m.topic] = consumed.get(m.topic, 0) + 1
            mark = len(out)
            # One bad record never costs another anything: whatever it raises, it is dead-lettered
            # and the batch goes on (_isolate).
            try:
                if m.topic == self.t_merchant_events:
                    try:
                        forwarded = read_forwarded(self.validator, m.key, m.value, now)
                        self._check_placement(m)
                    except InvalidRecord as exc:
                        # Not ours, or not as we write it: it must not reach state, nor move a clock.
                        self.counters.internal_rejected += 1
                        where = f"partition {m.partition} offset {m.offset}"
                        self._dead_letter(m, f"internal merchant-events record at {where}: {exc}", out)
                        continue
                    merchant_event(m, forwarded, out)
                    continue
                if m.topic == self.t_reviews:
                    try:
                        resolution = parse_resolution(self.validator, m.key, m.value, now)
                        self._check_placement(m)
                        self._resolve(m, resolution, out)
                    except InvalidRecord as exc:
                        self.counters.internal_rejected += 1
                        where = f"partition {m.partition} offset {m.offset}"
                        self._dead_letter(m, f"internal reviews record at {where}: {exc}", out)
                    continue
                name, handler = self._routes[m.topic]
                try:
                    record = self._parsers[name](m.key, m.value, now)
                    self._check_placement(m)
                except InvalidRecord as exc:
                    self._dead_letter(
                        m, f"{name} record at partition {m.partition} offset {m.offset}: {exc}", out
                    )
                    continue
                handler(m, record, out)
            except Exception as exc:
                self._isolate(m, exc, out, mark)
        self.merchant_side.end_batch()
        return out

    def summaries(self) -> list[Out]:
        """The merchant summaries due, and tombstones of swept merchants (MerchantSide.summaries)."""
        return self.merchant_side.summaries()

    def flush_state(self) -> int:
        """Write what the batch changed. The payment index goes first: the changelog keeps each
        partition's records in the order written, so a crash that lost a payment's stored decision
        lost the rest of its batch's records of that partition too (its features, its draw), and the
        payment, decided again, is decided on the state it was decided on the first time."""
        self.sweeper.step(self._held)
        self._held = 0
        n = self.payment_index.flush()
        n += self.credit.flush() if self.credit is not None else 0
        n += self.merchant_decisions.flush()
        return n + self.users.flush() + self.merchants.flush()

    def run_local(self, batch: Iterable[Message], now_ms: int | None = None) -> list[Out]:
        """A whole deployment in this process, without Kafka (tests, benchmarks, backtests).

        Processes `batch` and flushes state, then feeds the internal topics back as the workers
        would: forwarded merchant events are processed in turn, merchant summaries applied to the
        view (directly: `view_summaries`). Returns the contract outputs (decisions, alerts, dead
        letters, credit adjustments).
        """
        out: list[Out] = []
        pending = list(batch)
        forwarded = self.t_merchant_events
        while pending:
            outs = self.process(pending, now_ms)
            self.flush_state()
            self.merchant_side.view_summaries()
            pending = []
            for o in outs:
                if o.topic != forwarded:
                    out.append(o)
                    continue
                # Forwarded events carry orjson bytes keyed by merchant id.
                key = o.key if isinstance(o.key, bytes) else (o.key or "").encode()
                # On the partition the producer's partitioner would put it (checked when placement is).
                partition = self.placement.expected(key) if self.placement is not None else 0
                pending.append(Message(forwarded, partition, 0, key, o.value))  # type: ignore[arg-type]
        return out

    def forget(self) -> None:
        """Drop in-memory state after a rebalance; it is rebuilt from the table on next use."""
        self.users.forget()
        self.merchants.forget()
        self.payment_index.forget()
        self.merchant_decisions.forget()
        self.reviews.forget()
        if self.credit is not None:
            self.credit.forget()
        self.merchant_side.forget()
        self.clock.reset()
        self.sweeper.restart()

    def on_broadcast(self, m: Message, report: bool = True) -> list[Out]:
        """Apply a record of a topic every worker reads whole: a ruleset or a merchant summary.

        `report=False` while catching up at start: a ruleset rejected then was dead-lettered
        when it was first published, and would otherwise be again at every restart.
        """
        key = (m.key or b"").decode("utf-8", "replace")
        if m.topic == self.t_merchant_risk:
            self.merchant_view.put(key, m.value)
            self.summaries_read += 1
            return []
        try:
            error = self.rules.publish(key, m.value)
        except Exception as exc:  # a record no check foresaw: rejected like any invalid ruleset
            error = self.rules.reject(key, self.faults.report(f"{m.topic} record at offset {m.offset}", exc))
        out: list[Out] = []
        if error is not None and report:
            self._dead_letter(m, error, out)
        return out

    def stats(self) -> dict[str, Any]:
        """Counters, state counts and the ruleset in force, for /stats."""
        out = self.counters.as_dict()
        out["late_events"] = self.users.late_events + self.merchants.late_events
        out["too_old_events"] = self.users.too_old_events + self.merchants.too_old_events
        out["alerts_suppressed"] = self.alert_gate.suppressed
        out["merchants_in_view"] = len(self.merchant_view)
        out["bad_summaries"] = self.merchant_view.bad
        out["summaries_read"] = self.summaries_read
        view = self.merchant_view
        if isinstance(view, BoundedMerchantView):
            out["merchant_cache"] = {"size": view.cache_size, "cached": view.cached, "misses": view.misses}
        out["memory"] = memory_stats(
            self.users, self.merchants, self.payment_index, self.early_chargebacks, self.alert_gate
        )
        out["memory"]["merchant_summaries_tombstoned"] = self.merchant_side.tombstoned
        if self.credit is not None:
            out["memory"].update(self.credit.memory_stats())
        out.update(self.rules.stats())
        out["shadow"] = self.shadow.stats()
        r = self.reviews
        out["reviews"] = {"opened": r.opened, "resolutions": r.resolutions, "swept": r.swept}
        if self.credit is not None:
            out.update(self.credit.stats())
        return out

    # -- helpers
    def _check_placement(self, m: Record) -> None:
        """InvalidRecord when `m` is not on the partition murmur2 gives its key (worker only)."""
        if self.placement is not None:
            misplaced = self.placement.problem(m.key, m.partition)
            if misplaced is not None:
                self.counters.mispartitioned += 1
                raise InvalidRecord(misplaced)

    def _dead_letter(self, m: Message, error: str, out: list[Out]) -> None:
        self.counters.dead_letters += 1
        classes, cls = self.counters.dead_letter_classes, reason_class(error, m.topic == self.t_rules)
        classes[cls] = classes.get(cls, 0) + 1
        key, value = fitted_dead_letter(
            m.topic, m.partition, m.offset, error, m.value, m.key, self.dead_letter_limit
        )
        out.append(Out(self.t_dead, key, value))

    def _isolate(self, m: Message, exc: Exception, out: list[Out], mark: int) -> None:
        """Dead-letter a record whose processing raised, and leave state consistent.

        The record's outputs are dropped. Its entity may be half-updated in memory (an event marked
        seen, windows partly advanced), so the state is flushed and the entity dropped from memory:
        it is rebuilt from the table on its next touch, and memory equals what is persisted again.
        What the handler had persisted stays: an event already appended to its chunk is held (a
        replay of it is a duplicate, but for a payment with no stored decision, which is decided
        again); one whose apply raised is not (a replay raises again, and is dead-lettered again).
        Counters and alert-dedupe marks the record moved are not rolled back.
        """
        del out[mark:]
        self.counters.failed_records += 1
        where = f"{m.topic} record at partition {m.partition} offset {m.offset}"
        self._dead_letter(m, f"{where}: {self.faults.report(where, exc)}", out)
        self.flush_state()
        # Every record is keyed by its entity id (validated), so the key names what it touched.
        entity_id = (m.key or b"").decode("utf-8", "replace")
        self.users.discard(entity_id)
        self.merchants.discard(entity_id)
        self.merchant_side.reload(entity_id, m.partition)

    def _hold_user(self, user_id: str, partition: int, held: HeldEvent) -> Slot[UserState]:
        """Apply and persist one event to its user (merchants: MerchantSide.hold); its slot."""
        self._tick(partition, held.ts)
        users = self.users
        slot = users.slot(user_id, partition)
        if not users.add(slot, held):
            self.counters.duplicates += 1
        else:
            users.expire(slot, slot.entity.latest)
        return slot

    def _tick(self, partition: int, ts: int) -> None:
        """An event reached state: it moves its partition's clock, and the sweep's work (sweep.py)."""
        self.clock.advance(partition, ts)
        self._held += 1

    # -- per topic
    def _payment(self, m: Record, p: Payment, out: list[Out]) -> None:
        eid = "p" + p.event_id
        users = self.users
        index = self.payment_index
        self._tick(m.partition, p.ts)
        # The payment index is the dedupe authority for payments: it outlives the user's chunks
        # (the dedupe horizon), and holds the decision of a payment read again after a crash.
        stored = index.find(p.user_id, p.event_id)
        if stored is not None:
            outcome = stored.outcome
            if outcome is not None and stored.offset == m.offset:
                self._replayed_payment(m, p, users.slot(p.user_id, m.partition), outcome, out)
            else:  # sent again (another offset): no second effect
                self.counters.duplicates += 1
            self.merchant_side.forward(out, eid, M_PAYMENT, p.ts, p.amount, p.merchant_id, p.user_id, outcome)
            return
        slot = users.slot(p.user_id, m.partition)
        user = slot.entity
        # Whether the device is new is a question about the user's past: ask before applying.
        new_device = user.device_is_new(p.device_id, p.ts)
        # Held already (read again after a crash that kept the user's chunks but not the decision):
        # decided now, on the state that holds it.
        held = HeldEvent(eid, U_PAYMENT, p.ts, p.amount, (p.merchant_id, p.device_id))
        if users.add(slot, held):
            users.expire(slot, user.latest)
        user_features = user.features()
        user_features["amount_zscore_30d"] = user.amount_zscore(p.ts, p.amount)
        user_features["new_device"] = 1.0 if new_device else 0.0
        credit = self.credit
        if credit is not None:  # a review due at this payment comes before its decision
            account = credit.before_payment(m.partition, p, out)
            credit.add_fields(user_features, p.user_id, account, p.ts)
        merchant = self.merchant_view.get(p.merchant_id, UNKNOWN_MERCHANT)
        ctx = {"payment": payment_fields(p), "user": user_features, "merchant": merchant}
        explain = self.settings.explain_decisions
        ruleset = self.rules.ruleset
        verdict = decide(ruleset, ctx, explain)
        if self.rules.shadow is not None:  # a candidate deciding beside the live one, never acting
            would_be = self.shadow.observe(self.rules.shadow, p, ctx, verdict, explain, ruleset)
            if would_be is not None:
                out.append(Out(self.shadow.topic, p.user_id, would_be))
        outcome = Outcome(verdict.action, verdict.score, verdict.rules_version, verdict.reasons)
        d = self.counters.decisions
        d[verdict.action] = d.get(verdict.action, 0) + 1
        record = decision_record(p, verdict.action, verdict.score, verdict.reasons, verdict.rules_version)
        if verdict.explanation is not None:
            record["explanation"] = verdict.explanation
        out.append(Out(self.t_decisions, p.user_id, record))
        # Merchant-only rules are alerted by the merchant's owner (Alerting.merchant_event).
        user_fired = [f for f in verdict.alerts if f.subject == "user"]
        if credit is not None:  # the draw happens with the decision
            fired = [(f.reason, f.severity) for f in user_fired]
            credit.after_payment(m.partition, account, p, verdict.action, fired, out, m.offset)
        if user_fired:
            self.alerting.alert(out, ("user", p.user_id, m.partition), user_fired, p.ts, (users, slot, held))
        index.add(m.partition, p.user_id, p.event_id, p.merchant_id, p.ts, p.amount, m.offset, outcome)
        if verdict.action == "review":
            self._open_review(m.partition, p, outcome)
        self._claim_early_chargeback(m.partition, p)
        self.merchant_side.forward(out, eid, M_PAYMENT, p.ts, p.amount, p.merchant_id, p.user_id, outcome)

    def _replayed_payment(self, m: Record, p: Payment, slot: Slot[UserState], outcome: Outcome,
                          out: list[Out]) -> None:
        """A payment read again after a crash (same offset as its stored decision): its decision
        again, and whatever part of its state the crash lost (each part is changed once)."""
        action, reasons = outcome.action, outcome.reasons
        self.counters.duplicates += 1
        self.counters.decisions_replayed += 1
        record = decision_record(p, action, outcome.score, reasons, outcome.rules_version)
        out.append(Out(self.t_decisions, p.user_id, record))
        users = self.users
        held = HeldEvent("p" + p.event_id, U_PAYMENT, p.ts, p.amount, (p.merchant_id, p.device_id))
        if users.add(slot, held):  # the crash lost it from the user's chunks
            users.expire(slot, slot.entity.latest)
        credit = self.credit
        if credit is not None:
            account = credit.before_payment(m.partition, p, out)
            fired = self.rules.ruleset.user_alerts_for(reasons)
            credit.after_payment(m.partition, account, p, action, fired, out, m.offset)
        if action == "review":  # the crash may have lost its case
            self._open_review(m.partition, p, outcome)
        self._claim_early_chargeback(m.partition, p)

    def _claim_early_chargeback(self, partition: int, p: Payment) -> None:
        """Mark a just-indexed payment as fraud if its chargeback came first (and is held)."""
        came_first = self.early_chargebacks.claim_held(partition, p.user_id, p.event_id)
        if came_first is None:
            return
        index = self.payment_index
        marked = index.marked
        index.mark_fraud(partition, p.user_id, p.event_id, came_first[0], offset=came_first[1])
        if index.marked > marked:  # not when read again after a crash that kept the mark
            self.counters.chargebacks_matched_late += 1

    def _chargeback(self, m: Record, c: Chargeback, out: list[Out]) -> None:
        eid = "c" + c.event_id
        users, index = self.users, self.payment_index
        self._tick(m.partition, c.ts)
        slot = users.slot(c.user_id, m.partition)
        first = eid not in slot.seen
        if first:
            # Forgotten by the user's state (expired, swept) yet marked on its payment: sent again.
            known = index.find(c.user_id, c.payment_id)
            if known is not None and known.chargeback_id == c.event_id and known.chargeback_offset not in (
                None, m.offset
            ):
                first = False
            else:
                users.add(slot, HeldEvent(eid, U_CHARGEBACK, c.ts, c.amount))
                users.expire(slot, slot.entity.latest)
        if not first:
            self.counters.duplicates += 1
        self.merchant_side.forward(out, eid, M_CHARGEBACK, c.ts, c.amount, c.merchant_id)
        # Each part below is changed once per chargeback, so a chargeback read again after a crash
        # completes what the crash lost.
        if self.credit is not None:
            self.credit.on_chargeback(m.partition, c, out)
        original = index.mark_fraud(m.partition, c.user_id, c.payment_id, c.event_id, c.ts, m.offset)
        if original is None:
            self.early_chargebacks.hold(m.partition, c.user_id, c.payment_id, c.event_id, c.ts, m.offset)
        if not first:
            return
        # Each chargeback is a confirmed incident of its own: always alerted, never deduped.
        if original is not None:
            self.counters.chargebacks_matched += 1
            reasons = [CHARGEBACK]
        else:
            self.counters.chargebacks_unmatched += 1
            reasons = [CHARGEBACK, UNMATCHED_CHARGEBACK]
        self.alerting.emit(out, "user", c.user_id, "high", reasons, [c.event_id, c.payment_id], c.ts)

    def _repayment(self, m: Message, r: Repayment, out: list[Out]) -> None:
        eid = "r" + r.event_id
        slot: Slot[Any]
        if r.account_type == "user":
            held = HeldEvent(eid, U_REPAYMENT, r.ts, int(r.on_time))
            slot = self._hold_user(r.account_id, m.partition, held)
        else:
            held = HeldEvent(eid, M_REPAYMENT, r.ts, r.amount)
            slot, _ = self.merchant_side.hold(out, r.account_id, m.partition, held)
        if self.credit is not None:  # once per repayment id, also when held already (a crash)
            self.credit.on_repayment(m.partition, r, slot, out)

    # -- the analysts' review queue (state/reviews.py, core/reviews.py)
    def _open_review(self, partition: int, p: Payment, o: Outcome) -> None:
        """A case for a payment decided `review` (once: a payment read again finds its case)."""
        self.reviews.open(partition, {
            "user_id": p.user_id, "payment_id": p.event_id, "merchant_id": p.merchant_id, "ts": p.ts,
            "amount": p.amount, "score": o.score, "reasons": list(o.reasons),
            "rules_version": o.rules_version,
        })

    def _resolve(self, m: Record, r: Resolution, out: list[Out]) -> None:
        """An analyst's resolution: the case resolved and audited once per control id, and the
        override (if any) applied to the user's credit account once per control id. InvalidRecord
        when there is no case to resolve or the override cannot be applied."""
        reviews = self.reviews
        case = reviews.get(r.user_id, r.payment_id)
        if case is None:
            raise InvalidRecord(
                f"no review case for payment {r.payment_id!r} of user {r.user_id!r} (not decided review, "
                "or its case expired)"
            )
        if r.action is not None and self.credit is None:
            raise InvalidRecord(
                f"action {r.action} needs the credit policy, and credit is off (STREAMRISK_CREDIT)"
            )
        try:
            applied = reviews.resolve(m.partition, case, r.audit_entry())
        except ValueError as exc:
            raise InvalidRecord(str(exc)) from None
        if not applied:
            self.counters.duplicates += 1
        if r.action is not None and self.credit is not None:
            # At the reviewed payment's event time (or the account's, if later), not the analyst's clock.
            self.credit.on_override(m.partition, r.user_id, r.control_id, case["ts"], r.action, r.limit, out)
