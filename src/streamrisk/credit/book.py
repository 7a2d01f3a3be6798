"""Credit accounts kept in the worker's state table, and the calls the processor's handlers make.

Each user's and merchant's account is one small record in the same changelog-backed KV as the rest of
the state (`cu␟{user_id}`, `cm␟{merchant_id}`), bounded by the policy's look-back and
`max_tracked_draws`. Accounts a batch touches are held in memory until `flush()`, which writes each
once; between batches the table is the only copy, so the API and the next decision read the same
numbers. Fulfilled orders are indexed by `order_id` for the settlement period (a `PaymentIndex` under
its own key prefix), so a refund is charged to the order it refunds: a refund of an order fulfilled
before the settlement period does not lower today's receivables.

The background sweep (state/sweep.py) drops, on each partition's event-time clock: a user account once
it is closed (settled, at its initial limit and idle for `idle_ms`: `user.closed`), a merchant account
once its merchant's state has expired and it holds no line, no lowered advance rate, no hold, nothing
outstanding and no advance within the settlement period (`merchant.settled`), and a merchant's order
index once its newest order is past the settlement period. Each plus the allowed lateness, so no event
within it could have seen the record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from ..core.decisions import advance_decision_record, limit_adjustment_record, line_adjustment_record
from ..core.events import Advance, Chargeback, Order, Payment, Repayment, to_major
from ..features.entities import M_CHARGEBACK, M_PAYMENT, M_SETTLED_REFUND, MerchantState
from ..settings import DAY_MS
from ..state import keys
from ..state.chunks import HeldEvent
from ..state.kv import KV, SEP
from ..state.payment_index import PaymentIndex
from ..state.store import EntityStore, Slot
from . import merchant as mc
from . import user as uc
from .policy import SEVERITY_RANK, CreditPolicy

if TYPE_CHECKING:
    from ..state.sweep import PartitionClock

USER_KIND = keys.CREDIT_USER
MERCHANT_KIND = keys.CREDIT_MERCHANT
ORDERS_PREFIX = b"o"  # the order index's keys: b"o" + the PaymentIndex key
assert ORDERS_PREFIX + keys.PAYMENT_INDEX == keys.ORDER_INDEX
CACHE_MAX = 100_000  # accounts kept decoded between batches (~1 KB each at most)


#: (kind "user"/"merchant", account id, event time, point "open"/"review"/"adjustment", PD features).
PdWatch = Callable[[str, str, int, str, dict[str, float]], None]


class Out(NamedTuple):  # the processor's Out, without importing the processor
    topic: str
    key: str
    value: dict[str, Any]


class _PrefixedKV:
    """The same table under a key prefix, so a second PaymentIndex cannot collide with the first."""

    def __init__(self, kv: KV, prefix: bytes) -> None:
        self.kv, self.prefix = kv, prefix

    def get(self, key: bytes) -> bytes | None:
        return self.kv.get(self.prefix + key)

    def put(self, partition: int, key: bytes, value: bytes) -> None:
        self.kv.put(partition, self.prefix + key, value)

    def delete(self, partition: int, key: bytes) -> None:
        self.kv.delete(partition, self.prefix + key)


class CreditBook:
    """User credit accounts and merchant credit lines, priced from the events as they are processed."""

    def __init__(
        self,
        kv: KV,
        policy: CreditPolicy,
        merchants: EntityStore[MerchantState],
        settlement_ms: int,
        limit_topic: str,
        line_topic: str,
        account_idle_ms: int = 365 * DAY_MS,
        clock: PartitionClock | None = None,
        partition_of: Callable[[str], int] | None = None,
        advance_topic: str = "advance-decisions",
    ) -> None:
        self.kv = kv
        self.policy = policy
        self.merchants = merchants
        self.settlement_ms = settlement_ms
        self.t_limits = limit_topic
        self.t_lines = line_topic
        self.t_advances = advance_topic
        # Event-time clock and entity id -> partition for the background sweep (module docstring).
        self.account_idle_ms = account_idle_ms
        self.clock = clock
        self.partition_of = partition_of
        self.orders = PaymentIndex(_PrefixedKV(kv, ORDERS_PREFIX), retention_ms=settlement_ms,
                                   clock=clock, partition_of=partition_of)
        # Accounts the current batch touched: id -> (partition, account), written by flush().
        # Accounts read or changed lately (None: the user has none yet), so a busy user is not decoded
        # again every batch. Always equal to the table after flush(); dropped whole at CACHE_MAX.
        self._users: dict[str, tuple[int, uc.UserAccount | None]] = {}
        self._merchants: dict[str, tuple[int, mc.MerchantAccount]] = {}
        self._changed: set[tuple[bytes, str]] = set()  # (kind, id) of accounts to write at flush
        self.limit_adjustments: dict[str, int] = {}  # by reason, for /stats and the demo
        self.line_adjustments: dict[str, int] = {}
        self.draws_reversed = 0
        self.advances: dict[str, int] = {}  # advance decisions by action, for /stats and the demo
        self.advance_overpayments = 0  # merchant repayments that found less outstanding than they paid
        # Expected loss for /metrics, kept as the accounts change (never summed over the table at a
        # scrape): (kind, id) -> (PD band, exposure, expected loss, PD), minor units, of each account
        # this worker wrote since it started or last lost its state, and their sums by (kind, band).
        self._risk: dict[tuple[bytes, str], tuple[int, int, int, float]] = {}
        self._risk_sums: dict[tuple[bytes, int], list[int]] = {}
        self.user_accounts_swept = 0
        self.merchant_accounts_swept = 0
        # `streamrisk train --pd` (training/pd.py): told each account's PD features at each point a PD
        # is priced for (an account opened, reviewed, adjusted); None in a worker.
        self.pd_watch: PdWatch | None = None

    # -- accounts
    def user(self, partition: int, user_id: str, ts: int, open_at: bool) -> uc.UserAccount | None:
        """The user's account; a new one is opened at `ts` only when `open_at` (a credit event).

        Users who only ever pay by card or wallet never get an account, so they cost no writes."""
        held = self._users.get(user_id)
        acct = held[1] if held is not None else None
        if held is None:
            raw = self.kv.get(USER_KIND + SEP + user_id.encode())
            acct = uc.UserAccount.from_list(orjson.loads(raw)) if raw else None
        if acct is not None and ts - acct.clock > self.idle_ms and self._closed(user_id, acct, ts):
            acct = None  # closed, swept or not (the sweep is invisible to decisions)
        if acct is None and open_at:
            acct = uc.open_account(user_id, ts, self.policy.user)
            if self.pd_watch is not None:
                self.pd_watch("user", user_id, ts, "open", uc.pd_features(acct, self.policy.user.lookback_ms))
            # Written even if nothing else changes it (a declined first credit payment): otherwise a
            # restart would open it again at a later event, with another review date.
            self._changed.add((USER_KIND, user_id))
        if held is None or acct is not held[1]:
            self._users[user_id] = (partition, acct)
        return acct

    @property
    def idle_ms(self) -> int:
        """How long a settled user account must go without a credit event before it is closed: the
        setting, or the policy's look-back if longer (a signal in it can still cut the limit)."""
        return max(self.account_idle_ms, self.policy.user.lookback_ms)

    def _closed(self, user_id: str, acct: uc.UserAccount, ts: int) -> bool:
        return uc.closed(acct, ts, self.policy.user.initial_limit_for(user_id), self.idle_ms)

    def merchant(self, partition: int, merchant_id: str) -> mc.MerchantAccount:
        held = self._merchants.get(merchant_id)
        if held is not None:
            return held[1]
        raw = self.kv.get(MERCHANT_KIND + SEP + merchant_id.encode())
        if raw is None:
            acct = mc.open_account(self.policy.merchant)
        else:
            acct = mc.MerchantAccount.from_list(orjson.loads(raw))
        self._merchants[merchant_id] = (partition, acct)
        return acct

    def flush(self) -> int:
        """Write every account the batch changed, once; returns the records written."""
        for kind, entity_id in self._changed:
            partition, acct = (self._users if kind == USER_KIND else self._merchants)[entity_id]
            assert acct is not None
            if kind == USER_KIND:  # a merchant's is priced at its reprice (on_merchant_event)
                assert isinstance(acct, uc.UserAccount)
                self._track(kind, entity_id, self.user_pd(acct), acct.outstanding)
            value = acct.encode()
            self.kv.put(partition, kind + SEP + entity_id.encode(), value)
        n = len(self._changed)
        self._changed.clear()
        if len(self._users) + len(self._merchants) > CACHE_MAX:
            self._users.clear()
            self._merchants.clear()
        return n + self.orders.flush()

    # -- background expiry (state/sweep.py)
    def sweep_handlers(self) -> dict[bytes, Callable[[bytes], None]]:
        """The sweep's handler of each key kind the book writes."""
        return {USER_KIND: self.sweep_user_key, MERCHANT_KIND: self.sweep_merchant_key,
                keys.ORDER_INDEX: self.sweep_order_key}

    def _horizon(self, entity_id: str) -> tuple[int, int] | None:
        """(partition, the earliest event time a record of `entity_id` can still be read at: its
        partition's clock less the allowed lateness), or None while the partition has no clock."""
        if self.clock is None or self.partition_of is None:
            return None
        partition = self.partition_of(entity_id)
        now = self.clock.ts.get(partition)
        return None if now is None else (partition, now - self.clock.grace_ms)

    def sweep_user_key(self, key: bytes) -> None:
        """Drop the user account under `key` once it is closed for every event still to come."""
        if key.count(SEP) != 1:
            return
        user_id = key[len(USER_KIND) + 1 :].decode()
        if (USER_KIND, user_id) in self._changed:
            return
        if self.clock is None:
            return
        # The table's record, not the cache's: the cache may hold a new account (or none) in place of
        # a closed one the table still holds. Recent accounts (most) are left without decoding: the
        # clock is the list's third number.
        raw = self.kv.get(key)
        if not raw or not self.clock.may_expire(int(raw.split(b",", 3)[2]), self.idle_ms):
            return
        acct = uc.UserAccount.from_list(orjson.loads(raw))
        horizon = self._horizon(user_id)
        if horizon is not None and self._closed(user_id, acct, horizon[1]):
            self.kv.delete(horizon[0], key)
            self._users.pop(user_id, None)
            self._untrack(USER_KIND, user_id)
            self.user_accounts_swept += 1

    def sweep_merchant_key(self, key: bytes) -> None:
        """Drop the merchant account under `key` once its merchant's state has expired (swept) and
        it holds nothing a new account would not."""
        if key.count(SEP) != 1:
            return
        merchant_id = key[len(MERCHANT_KIND) + 1 :].decode()
        if (MERCHANT_KIND, merchant_id) in self._changed or merchant_id in self.merchants.slots:
            return
        if self.kv.get(keys.MERCHANT + SEP + merchant_id.encode()) is not None:
            return  # the merchant has state within the retention
        held = self._merchants.get(merchant_id)
        if held is not None:
            acct = held[1]
        else:
            raw = self.kv.get(key)
            if raw is None:
                return
            acct = mc.MerchantAccount.from_list(orjson.loads(raw))
        horizon = self._horizon(merchant_id)
        if horizon is not None and mc.settled(acct, horizon[1], self.policy.merchant, self.settlement_ms):
            self.kv.delete(horizon[0], key)
            self._merchants.pop(merchant_id, None)
            self._untrack(MERCHANT_KIND, merchant_id)
            self.merchant_accounts_swept += 1

    def sweep_order_key(self, key: bytes) -> None:
        """A key of the order index: the index's own sweep, under its prefix."""
        self.orders.sweep_key(key[len(ORDERS_PREFIX) :])

    def forget(self) -> None:
        self._users.clear()
        self._merchants.clear()
        self._changed.clear()
        self.orders.forget()
        self._risk.clear()
        self._risk_sums.clear()

    # -- user side: one call before a payment is decided, one after, one per repayment/chargeback
    def _reviewed(self, acct: uc.UserAccount, user_id: str, event_id: str, ts: int, out: list[Any]) -> None:
        if ts >= acct.next_review:
            self._changed.add((USER_KIND, user_id))
            adj = uc.review(acct, ts, self.policy.user)
            if adj is not None:
                self._emit_limit(out, user_id, event_id, adj, acct)
            elif self.pd_watch is not None:
                features = uc.pd_features(acct, self.policy.user.lookback_ms)
                self.pd_watch("user", user_id, ts, "review", features)

    def _credit_event(self, partition: int, user_id: str, event_id: str, ts: int,
                      out: list[Any]) -> uc.UserAccount:
        """The user's account (opened if need be) for an event that changes it, reviewed first."""
        acct = self.user(partition, user_id, ts, open_at=True)
        assert acct is not None
        self._reviewed(acct, user_id, event_id, ts, out)
        self._changed.add((USER_KIND, user_id))
        return acct

    def before_payment(self, partition: int, p: Payment, out: list[Any]) -> uc.UserAccount | None:
        """The user's account before the payment is decided, reviewed first if a review is due."""
        acct = self.user(partition, p.user_id, p.ts, open_at=p.method == "credit_line")
        if acct is not None:
            self._reviewed(acct, p.user_id, p.event_id, p.ts, out)
        return acct

    def add_fields(self, features: dict[str, float], user_id: str, acct: uc.UserAccount | None,
                   ts: int) -> None:
        """Set the `user.credit_*` fields a decision reads (major units), before the payment draws at
        `ts`."""
        if acct is None:
            limit = self.policy.user.initial_limit_for(user_id)
            features["credit_limit"] = to_major(limit)
            features["credit_available"] = to_major(self.available(None, limit, ts))
            features["credit_utilization"] = 0.0
            return
        features["credit_limit"] = to_major(acct.limit)
        features["credit_available"] = to_major(self.available(acct, acct.available, ts))
        features["credit_utilization"] = acct.utilization()

    def available(self, acct: uc.UserAccount | None, available: int, ts: int) -> int:
        """What the account may still draw at `ts`: its available credit, capped for an unproven
        account (no on-time repayment in the look-back) at the policy's `unproven_limit` less what it
        owes. Limits move by adjustments; this cap is read at each payment, as it stands then."""
        pol = self.policy.user
        cap = pol.unproven_limit
        if cap is None or (acct is not None and not uc.unproven(acct, ts, pol.lookback_ms)):
            return available
        return min(available, max(0, cap - (acct.outstanding if acct is not None else 0)))

    def after_payment(self, partition: int, acct: uc.UserAccount | None, p: Payment, action: str,
                      fired: Iterable[tuple[str, str]], out: list[Any], offset: int | None = None) -> None:
        """The decision is made: an approved or reviewed credit_line payment draws; its user alerts
        (reason, severity) may freeze the limit at once or count against the next review.

        Once per payment, whichever of the batch's state records survived a crash: it draws once per
        payment id, and its alerts count once per input `offset` (None: always). Its draw follows
        `action`: a payment decided again after a crash lost its stored decision draws if it did not,
        and gives its draw back if it is declined now."""
        pol = self.policy.user
        if acct is not None and p.method == "credit_line":
            if action != "decline":
                if uc.draw(acct, p.event_id, p.ts, p.amount, pol):
                    self._changed.add((USER_KIND, p.user_id))
            elif uc.undraw(acct, p.event_id):
                self._changed.add((USER_KIND, p.user_id))
        if acct is not None and offset is not None and acct.alerts_counted(partition, offset):
            return
        ranked = [(r, SEVERITY_RANK[s]) for r, s in fired if r not in pol.ignore_alert_reasons]
        if ranked and max(s for _, s in ranked) >= min(pol.cut_alert_rank, pol.freeze_alert_rank):
            if acct is None:
                acct = self._credit_event(partition, p.user_id, p.event_id, p.ts, out)
            self._changed.add((USER_KIND, p.user_id))
            if offset is not None:
                acct.alerted = [partition, offset]
            adj = uc.alerts(acct, p.ts, ranked, pol)
            if adj is not None:
                self._emit_limit(out, p.user_id, p.event_id, adj, acct)

    def on_repayment(self, partition: int, r: Repayment, slot: Slot[Any], out: list[Any]) -> None:
        """A user repayment pays the balance down, and one past due cuts the limit at once; a merchant
        one pays its advances down and moves the advance rate. Once per repayment id (the accounts
        remember the ids they applied)."""
        if r.account_type == "user":
            acct = self._credit_event(partition, r.account_id, r.event_id, r.ts, out)
            adj = uc.repay(acct, r.ts, r.amount, r.on_time, self.policy.user, r.event_id)
            if adj is not None:
                self._emit_limit(out, r.account_id, r.event_id, adj, acct)
        else:
            macct = self.merchant(partition, r.account_id)
            owed = macct.outstanding
            if mc.repayment(macct, r.on_time, self.policy.merchant, r.event_id, r.amount):
                self._changed.add((MERCHANT_KIND, r.account_id))
                self.advance_overpayments += r.amount > owed
                self._exposed(r.account_id, macct.outstanding)
            self.on_merchant_event(partition, r.account_id, r.event_id, slot, out)

    def on_chargeback(self, partition: int, c: Chargeback, out: list[Any]) -> None:
        """Reverse the payment's draw; a fraud chargeback freezes the limit at once, a service dispute
        counts against the next review. Once per chargeback id."""
        acct = self._credit_event(partition, c.user_id, c.event_id, c.ts, out)
        effect = uc.chargeback(acct, c.payment_id, c.ts, self.policy.user, c.event_id, c.reason)
        if effect.reversed:
            self.draws_reversed += 1
        if effect.adjustment is not None:
            self._emit_limit(out, c.user_id, c.event_id, effect.adjustment, acct)

    def on_override(self, partition: int, user_id: str, control_id: str, ts: int, action: str,
                    limit: int | None, out: list[Any]) -> None:
        """An analyst's freeze, unfreeze or new limit (a review's resolution), once per control event
        id; at `ts`, or the account's own clock if that is later (the user's event time)."""
        acct = self.user(partition, user_id, ts, open_at=True)
        assert acct is not None
        at = max(ts, acct.clock)
        self._reviewed(acct, user_id, control_id, at, out)
        self._changed.add((USER_KIND, user_id))
        adj = uc.override(acct, "o" + control_id, action, limit, at, self.policy.user)
        if adj is not None:
            self._emit_limit(out, user_id, control_id, adj, acct)

    # -- merchant side
    def on_order(self, partition: int, o: Order, slot: Slot[MerchantState], out: list[Any],
                 again: bool = False, offset: int | None = None) -> None:
        """Index a fulfilled order; charge a refund to its order, if that was fulfilled in the period.
        `again`: the merchant holds the order event already (read again after a crash): whatever of it
        is missing from the state is added, nothing twice. `offset` is the event's input offset: a
        fulfilment is indexed with its own, so a refund read again after a crash is charged only to a
        fulfilment read before it, not to one the state holds from later in the stream.

        Placed and cancelled orders do not reprice the line on their own (they move neither the
        receivables nor, much, the refund rate); the next reprice includes them."""
        if o.status == "fulfilled":
            if not again or self.orders.find(o.merchant_id, o.order_id) is None:  # indexed once
                self.orders.add(partition, o.merchant_id, o.order_id, "", o.ts, o.amount, offset)
        elif o.status == "refunded":
            order = self.orders.find(o.merchant_id, o.order_id)
            fulfilled_at = order.offset if order is not None else None
            if fulfilled_at is not None and offset is not None and fulfilled_at > offset:
                order = None  # fulfilled later in the stream
            if order is not None and order.ts > slot.entity.latest - self.settlement_ms:
                # Held at the order's fulfilment time, it leaves the settlement window with the order.
                settled = HeldEvent("s" + o.event_id, M_SETTLED_REFUND, order.ts, min(o.amount, order.amount))
                self.merchants.add(slot, settled)
        else:
            return
        self.on_merchant_event(partition, o.merchant_id, o.event_id, slot, out)

    def on_forwarded(self, partition: int, merchant_id: str, event_id: str, series: int, ts: int,
                     slot: Slot[MerchantState], out: list[Any], again: bool = False) -> None:
        """A payment or chargeback at the merchant at `ts`, forwarded from its user's worker (`event_id`
        with its one-letter prefix). A payment only lowers the chargeback rate a little, so it does not
        reprice the line on its own (most of the merchant's events are payments); the next order,
        repayment or chargeback includes it. A chargeback counts towards a spike, which cuts the line
        at once. `again`: the merchant held the event already (read again after a crash): only what
        the account lacks of it is applied."""
        if series == M_PAYMENT:
            return
        force = False
        if series == M_CHARGEBACK:
            acct = self.merchant(partition, merchant_id)
            state = slot.entity
            spike = mc.chargeback(acct, event_id, ts, state.latest, state.chargebacks_30d(),
                                  self.policy.merchant)
            if spike is not None:
                self._changed.add((MERCHANT_KIND, merchant_id))
            elif again:
                return
            force = bool(spike)
        elif again:
            return
        self.on_merchant_event(partition, merchant_id, event_id[1:], slot, out, force=force)

    def on_merchant_event(self, partition: int, merchant_id: str, event_id: str,
                          slot: Slot[MerchantState], out: list[Any], force: bool = False) -> None:
        """Reprice the merchant's line after one of its events; publish it when outside the band."""
        acct = self.merchant(partition, merchant_id)
        state = slot.entity
        inputs = mc.LineInputs(*state.credit_inputs())
        change = mc.reprice(acct, inputs, state.latest, self.policy.merchant, force)
        pd = self.merchant_pd(acct, inputs.refund_rate_30d, inputs.chargeback_rate_30d, state.latest)
        self._track(MERCHANT_KIND, merchant_id, pd, acct.outstanding)  # exposure: its advances owed
        if change is not None:
            self._changed.add((MERCHANT_KIND, merchant_id))
            self._emit_line(out, merchant_id, event_id, change, pd)
            if self.pd_watch is not None:
                features = mc.pd_features(acct, inputs.refund_rate_30d, inputs.chargeback_rate_30d,
                                          state.latest, self.policy.merchant)
                self.pd_watch("merchant", merchant_id, change.ts, "adjustment", features)

    def on_advance(self, partition: int, a: Advance, offset: int, out: list[Any]) -> bool:
        """Decide an advance against the merchant's available line (line - outstanding) and draw it if
        approved, once per advance id; its `advance-decisions` record goes to `out`. A record read again
        at the offset its kept decision came from (after a crash) gets that decision again; False for
        one sent again (another offset), which has no effect and no output."""
        acct = self.merchant(partition, a.merchant_id)
        decision, new = mc.advance(acct, a.event_id, a.ts, a.amount, offset)
        if new:
            self._changed.add((MERCHANT_KIND, a.merchant_id))
            self._exposed(a.merchant_id, acct.outstanding)
            action = "approve" if decision.approved else "decline"
            self.advances[action] = self.advances.get(action, 0) + 1
        elif decision.offset != offset or offset < 0:
            return False
        record = advance_decision_record(a, bool(decision.approved), decision.reasons, decision.line,
                                         decision.outstanding, self.policy.version)
        out.append(Out(self.t_advances, a.merchant_id, record))
        return True

    def on_merchant_alert(self, merchant_id: str, slot: Slot[MerchantState], severities: Iterable[str],
                          out: list[Any], trigger: HeldEvent) -> None:
        """Merchant fraud alerts (e.g. bust-out), raised at the merchant's event `trigger`: cut the
        line at once and hold it."""
        rank = max((SEVERITY_RANK[s] for s in severities), default=-1)
        acct = self.merchant(slot.partition, merchant_id)
        pol = self.policy.merchant
        if mc.fraud_alert(acct, slot.entity.latest, rank, pol):
            self._changed.add((MERCHANT_KIND, merchant_id))
            # A merchant whose rule keeps firing is alerted on every event: once its line is cut to 0,
            # repricing finds 0 again until the hold ends (the alert read the features, so the windows
            # are advanced already, as repricing would).
            if mc.held_at_zero(acct, slot.entity.latest, pol):
                return
            # Held ids carry a one-letter topic prefix; adjustments name contract event ids.
            self.on_merchant_event(slot.partition, merchant_id, trigger.event_id[1:], slot, out, force=True)

    # -- pricing (credit/pricing.py): computed at an adjustment, an account's write and an API read
    def user_pd(self, acct: uc.UserAccount) -> float:
        return self.policy.pricing.user.pd(uc.pd_features(acct, self.policy.user.lookback_ms))

    def merchant_pd(self, acct: mc.MerchantAccount, refund_rate_30d: float, chargeback_rate_30d: float,
                    ts: int) -> float:
        features = mc.pd_features(acct, refund_rate_30d, chargeback_rate_30d, ts, self.policy.merchant)
        return self.policy.pricing.merchant.pd(features)

    def _track(self, kind: bytes, entity_id: str, pd: float, exposure: int) -> None:
        """Keep the account's expected loss (pd x lgd x exposure) in the sums /metrics exports."""
        pricing = self.policy.pricing
        entry = (pricing.band(pd), exposure, round(pd * pricing.lgd * exposure), pd)
        old = self._risk.get((kind, entity_id))
        if old == entry:
            return
        if old is not None:
            self._add_risk(kind, old, -1)
        self._risk[kind, entity_id] = entry
        self._add_risk(kind, entry, 1)

    def _exposed(self, merchant_id: str, exposure: int) -> None:
        """A merchant's outstanding moved (an advance, a repayment): its expected loss at the PD of its
        last reprice, until the next one."""
        old = self._risk.get((MERCHANT_KIND, merchant_id))
        if old is not None:
            self._track(MERCHANT_KIND, merchant_id, old[3], exposure)

    def _untrack(self, kind: bytes, entity_id: str) -> None:
        old = self._risk.pop((kind, entity_id), None)
        if old is not None:
            self._add_risk(kind, old, -1)

    def _add_risk(self, kind: bytes, entry: tuple[int, int, int, float], sign: int) -> None:
        sums = self._risk_sums.get((kind, entry[0]))
        if sums is None:
            sums = self._risk_sums[kind, entry[0]] = [0, 0, 0]
        sums[0] += sign
        sums[1] += sign * entry[1]
        sums[2] += sign * entry[2]

    def expected_loss(self) -> list[tuple[str, str, int, float, float]]:
        """(segment "user"/"merchant", PD band, accounts, exposure, expected loss), major units, of the
        accounts this worker wrote since it started or last lost its state (book docstring)."""
        pricing = self.policy.pricing
        out = []
        for (kind, band), (n, exposure, loss) in sorted(self._risk_sums.items()):
            if n:
                segment = "user" if kind == USER_KIND else "merchant"
                out.append((segment, pricing.band_label(band), n, to_major(exposure), to_major(loss)))
        return out

    # -- records
    def _emit_limit(self, out: list[Any], user_id: str, event_id: str, adj: uc.Adjustment,
                    acct: uc.UserAccount) -> None:
        for r in adj.reasons:
            self.limit_adjustments[r] = self.limit_adjustments.get(r, 0) + 1
        features = uc.pd_features(acct, self.policy.user.lookback_ms)
        if self.pd_watch is not None:
            self.pd_watch("user", user_id, adj.ts, "adjustment", features)
        pd = self.policy.pricing.user.pd(features)
        record = limit_adjustment_record(user_id, adj.previous, adj.new, adj.reasons, adj.ts, event_id,
                                         self.policy.version, adj.kind,
                                         (pd, self.policy.pricing.price_bp(pd)))
        out.append(Out(self.t_limits, user_id, record))

    def _emit_line(self, out: list[Any], merchant_id: str, event_id: str, change: mc.LineChange,
                   pd: float) -> None:
        for r in change.reasons:
            self.line_adjustments[r] = self.line_adjustments.get(r, 0) + 1
        record = line_adjustment_record(merchant_id, change.previous, change.new, change.reasons, change.ts,
                                        event_id, self.policy.version, (pd, self.policy.pricing.price_bp(pd)))
        out.append(Out(self.t_lines, merchant_id, record))

    # -- reads (HTTP API, /stats)
    def stats(self) -> dict[str, Any]:
        return {
            "credit_policy_version": self.policy.version,
            "limit_adjustments": dict(self.limit_adjustments),
            "line_adjustments": dict(self.line_adjustments),
            "draws_reversed": self.draws_reversed,
            "advance_decisions": dict(self.advances),
            "advance_overpayments": self.advance_overpayments,
        }

    def memory_stats(self) -> dict[str, int]:
        """What the sweep removed, for /stats → memory."""
        return {
            "user_credit_accounts_swept": self.user_accounts_swept,
            "merchant_credit_accounts_swept": self.merchant_accounts_swept,
            "order_indexes_swept": self.orders.swept_users,
        }

    def has_account(self, kind: str, entity_id: str) -> bool:
        """Whether the table holds a credit account of the user (`kind` "user") or merchant."""
        prefix = USER_KIND if kind == "user" else MERCHANT_KIND
        return self.kv.get(prefix + SEP + entity_id.encode()) is not None

    def user_view(self, user_id: str) -> dict[str, Any]:
        """The credit part of `GET /users/{id}`: the same account the next decision reads."""
        raw = self.kv.get(USER_KIND + SEP + user_id.encode())
        # Without an account, the PD and price a new account would have.
        a = uc.UserAccount.from_list(orjson.loads(raw)) if raw else uc.open_account(user_id, 0,
                                                                                    self.policy.user)
        pd = self.user_pd(a)
        return {
            "credit_limit": to_major(a.limit),
            "credit_outstanding": to_major(a.outstanding),
            "credit_available": to_major(self.available(a, a.available, a.clock)),
            "credit_status": a.status.value,
            "pd": pd,
            "price_bp": self.policy.pricing.price_bp(pd),
            "credit_adjustments": _history(a.history, "limit"),
        }

    def merchant_view(self, merchant_id: str, state: MerchantState | None) -> dict[str, Any]:
        """The credit part of `GET /merchants/{id}`."""
        raw = self.kv.get(MERCHANT_KIND + SEP + merchant_id.encode())
        a = mc.MerchantAccount.from_list(orjson.loads(raw)) if raw else mc.open_account(self.policy.merchant)
        inputs = mc.LineInputs(*(state.credit_inputs() if state is not None else (0, 0.0, 0.0, 0, 0)))
        pd = self.merchant_pd(a, inputs.refund_rate_30d, inputs.chargeback_rate_30d,
                              state.latest if state is not None else 0)
        return {
            "credit_line": to_major(a.line),
            "credit_outstanding": to_major(a.outstanding),
            "credit_available": to_major(a.available),
            "credit_utilization": a.utilization(),
            "receivables": to_major(inputs.receivables),
            "advance_rate": a.advance_bp / 10_000,
            "pd": pd,
            "price_bp": self.policy.pricing.price_bp(pd),
            "credit_adjustments": _history(a.history, "line"),
        }


def _history(rows: list[list[Any]], what: str) -> list[dict[str, Any]]:
    """Stored adjustments, newest first, as the API shows them."""
    return [
        {"ts": ts, f"previous_{what}": to_major(prev), f"new_{what}": to_major(new), "reasons": reasons}
        for ts, prev, new, reasons in reversed(rows)
    ]
