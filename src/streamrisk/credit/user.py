"""A user's credit account and the limit policy as explicit states, over plain data (no Kafka).

    ACTIVE ──raise──> COOLDOWN ──review after `until`──> ACTIVE
    ACTIVE / COOLDOWN ──cut──> (same state; raises then need on-time repayments after the cut)
    any ──high-severity alert, fraud chargeback──> FROZEN (limit = outstanding, nothing available)
    FROZEN ──review after `until`──> ACTIVE (limit back to at least the floor)

Bad news acts at once, good news waits: a high-severity alert or a fraud chargeback freezes, and a
repayment made after its due time cuts, in the step of the event that reveals it (one adjustment);
a service-dispute chargeback or a medium alert is a signal for the next review, and raises happen
only at reviews, with the cooldown and the hysteresis below.

Every change happens at an event's time, in the order the user's events are processed, so a
replay of the same events gives the same limits and the same adjustments. Amounts are integer
minor units.

Each event changes the account at most once, whatever part of a batch's state survived a crash
(README, "Guarantees"): a payment draws once per payment id (`draws`, which keeps reversed draws
marked rather than dropping them); a repayment or a chargeback is applied once per event id
(`applied`, bounded like the draws: kept for the policy's reversal window, at most
`max_tracked_draws`); a payment's alerts count once per input offset (`alerted`: the user's
payments are read in offset order from one partition, so an account that holds the alerts of the
payment at offset o holds those of every payment before it).
"""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

import orjson

from .policy import UserPolicy

# Reason codes of limit adjustments (docs/credit.md).
ON_TIME_REPAYMENTS = "ON_TIME_REPAYMENTS"
LATE_REPAYMENT = "LATE_REPAYMENT"
CHARGEBACK_RECEIVED = "CHARGEBACK_RECEIVED"
FRAUD_ALERT = "FRAUD_ALERT"
FRAUD_FREEZE = "FRAUD_FREEZE"
FREEZE_LIFTED = "FREEZE_LIFTED"
FRAUD_CHARGEBACK = "FRAUD_CHARGEBACK"  # follows FRAUD_FREEZE: a fraud or unauthorized chargeback froze it
REPAYMENT_PAST_DUE = "REPAYMENT_PAST_DUE"  # cut at once: a repayment made after its due time
ANALYST_OVERRIDE = "ANALYST_OVERRIDE"  # an analyst froze, unfroze or set the limit (review resolution)
# An analyst's freeze holds until an analyst lifts it: no review lifts it.
UNTIL_UNFROZEN = 1 << 62
# Review cuts, in the order their reasons are listed. Late repayments cut at once (REPAYMENT_PAST_DUE);
# LATE_REPAYMENT is pending only in accounts written before they did, and is reviewed as it was.
CUT_ORDER = (LATE_REPAYMENT, CHARGEBACK_RECEIVED, FRAUD_ALERT)

HISTORY = 5  # adjustments kept on the account for the API
MIN_SIGNALS = 64  # signal times kept per kind (newest first); at least raise_min_on_time


class Status(StrEnum):
    ACTIVE = "active"
    COOLDOWN = "cooldown"
    FROZEN = "frozen"


class Adjustment(NamedTuple):
    """A limit change: `kind` tells the review from the freeze or cut that may share a triggering event."""

    kind: str  # "review" | "freeze" (an alert's or a chargeback's) | "cut" (a repayment past due)
    previous: int
    new: int
    reasons: tuple[str, ...]
    ts: int


class SignalTimes(list[int]):
    """Sorted event times of one kind of signal, with their JSON kept beside them.

    An account is written after every batch that touches it, and its signal times are most of it
    (a user whose payments keep firing a rule holds up to MIN_SIGNALS cut signals): encoding them
    anew each time was the larger part of the credit book's cost. `keep` and `prune` are the only
    changes made to them; each keeps the JSON, so a write copies it instead of encoding every time.
    """

    __slots__ = ("_json", "_sizes")

    def __init__(self, times: Any = ()) -> None:
        super().__init__(times)
        self._json: bytearray | None = None  # `t1,t2,...` as orjson writes the list, without brackets
        self._sizes = array("H")  # bytes of each time in _json

    def keep(self, ts: int, cap: int) -> None:
        """Add a signal time; keep the newest `cap`."""
        pos = bisect.bisect_right(self, ts)
        self.insert(pos, ts)
        enc = self._json
        if enc is not None:
            if pos == len(self) - 1 and type(ts) is int and 0 <= ts < 1 << 63:  # usual: the newest signal
                digits = b"%d" % ts
                enc += b"," + digits if pos else digits
                self._sizes.append(len(digits))
            else:
                self._json = None
        if len(self) > cap:
            self.prune_first(1)

    def prune(self, horizon: int) -> None:
        """Forget the times at or before `horizon`."""
        if not self or self[0] > horizon:  # most calls: nothing to forget, no search
            return
        cut = bisect.bisect_right(self, horizon)
        if cut:
            self.prune_first(cut)

    def prune_first(self, n: int) -> None:
        del self[:n]
        enc = self._json
        if enc is not None:
            sizes = self._sizes
            if self:
                del enc[: sum(sizes[:n]) + n]  # each time with the comma after it
            else:
                enc.clear()
            del sizes[:n]

    def json(self) -> bytes:
        """orjson.dumps(list(self)), byte for byte."""
        return b"[" + self.json_items() + b"]"

    def json_items(self) -> bytearray:
        """json() without its brackets: the kept JSON itself, so read it and never change it."""
        enc = self._json
        if enc is None or len(self._sizes) != len(self):
            enc = self._json = bytearray(orjson.dumps(self)[1:-1])
            self._sizes = array("H", (len(b"%d" % t) for t in self))
        return enc


@dataclass(slots=True)
class UserAccount:
    limit: int
    next_review: int
    clock: int
    outstanding: int = 0
    status: Status = Status.ACTIVE
    until: int = -1  # end of the cooldown or the freeze
    last_cut: int = -1  # event time of the last cut (or freeze lift): raises need on-time repayments after it
    # Sorted ts of on-time repayments, and of cut signals, in the look-back.
    on_time: SignalTimes = field(default_factory=SignalTimes)
    negatives: SignalTimes = field(default_factory=SignalTimes)
    pending: set[str] = field(default_factory=set)  # cut reasons that arrived since the last review
    # payment id -> [ts, amount], or [ts, amount, 1] once its chargeback reversed (or voided) it
    draws: dict[str, list[int]] = field(default_factory=dict)
    history: list[list[Any]] = field(default_factory=list)  # [ts, previous, new, reasons], newest last
    # Event keys applied ("r"/"c" + event id) -> event ts.
    applied: dict[str, int] = field(default_factory=dict)
    # [partition, offset] of the newest payment whose alerts counted here ([] for none).
    alerted: list[int] = field(default_factory=list)
    # The JSON of [pending, draws, history, applied] as encode() writes it (without its `[`), until one
    # of them changes: a frozen user's account is written after every batch that touches it, and only
    # its clock, freeze end and cut signals change. Every change to the four clears it (this module).
    _tail: bytes | None = field(default=None, repr=False, compare=False)

    # -- reads
    @property
    def available(self) -> int:
        if self.status is Status.FROZEN:
            return 0
        return max(0, self.limit - self.outstanding)

    def utilization(self) -> float:
        return self.outstanding / self.limit if self.limit > 0 else 1.0

    # -- persistence (one small orjson-able list; bounded by the look-back and max_tracked_draws)
    def to_list(self) -> list[Any]:
        return [self.limit, self.next_review, self.clock, self.outstanding, self.status.value, self.until,
                self.last_cut, self.on_time, self.negatives, sorted(self.pending), self.draws, self.history,
                self.applied, self.alerted]

    def encode(self) -> bytes:
        """orjson.dumps(self.to_list()), byte for byte, with the signal times' JSON as kept."""
        head = orjson.dumps([self.limit, self.next_review, self.clock, self.outstanding, self.status.value,
                             self.until, self.last_cut])
        tail = self._tail
        if tail is None:
            tail = orjson.dumps([sorted(self.pending), self.draws, self.history, self.applied])[1:]
            self._tail = tail
        # Compact JSON lists concatenate: `[a,b` + `,[..],[..],` + `c]` is the dump of [a, b, [..], [..], c].
        return b"".join((head[:-1], b",[", self.on_time.json_items(), b"],[", self.negatives.json_items(),
                         b"],", tail[:-1], b",", orjson.dumps(self.alerted), b"]"))

    @classmethod
    def from_list(cls, v: list[Any]) -> UserAccount:
        # Accounts written before `applied` existed have 12 fields.
        return cls(v[0], v[1], v[2], v[3], Status(v[4]), v[5], v[6], SignalTimes(v[7]), SignalTimes(v[8]),
                   set(v[9]), v[10], v[11], v[12] if len(v) > 12 else {}, v[13] if len(v) > 13 else [])

    def alerts_counted(self, partition: int, offset: int) -> bool:
        """Whether the alerts of the payment read at `offset` of `partition` counted here already."""
        alerted = self.alerted
        return bool(alerted) and alerted[0] == partition and offset <= alerted[1]


def closed(a: UserAccount, ts: int, initial_limit: int, idle_ms: int) -> bool:
    """Whether the account is closed at `ts`: settled (nothing owed, no cut pending, not frozen, no
    cooldown or freeze running), at the user's initial limit, and without a credit event for more
    than `idle_ms`, at least the look-back (so no signal is left). A closed account is what a new one
    would be for every decision, so the book treats it as absent and the sweep drops it (book.py)."""
    return (
        ts - a.clock > idle_ms
        and a.outstanding == 0
        and not a.pending
        and a.status is not Status.FROZEN
        and a.until < ts
        and a.limit == initial_limit
    )


def open_account(user_id: str, ts: int, p: UserPolicy) -> UserAccount:
    return UserAccount(limit=p.initial_limit_for(user_id), next_review=ts + p.review_period_ms, clock=ts)


def _keep(times: SignalTimes, ts: int, p: UserPolicy) -> None:
    times.keep(ts, max(MIN_SIGNALS, p.raise_min_on_time))


def _advance(a: UserAccount, ts: int, p: UserPolicy) -> None:
    """Move the account's clock; forget signals and draws that no decision can use any more."""
    if ts <= a.clock:
        return
    a.clock = ts
    horizon = ts - p.lookback_ms
    a.on_time.prune(horizon)
    a.negatives.prune(horizon)
    old = ts - p.reversal_window_ms
    if a.draws and next(iter(a.draws.values()))[0] <= old:
        for pid in [pid for pid, d in a.draws.items() if d[0] <= old]:
            del a.draws[pid]
        a._tail = None
    if a.applied and next(iter(a.applied.values())) <= old:
        for key in [key for key, t in a.applied.items() if t <= old]:
            del a.applied[key]
        a._tail = None


def once(a: UserAccount, key: str, ts: int, p: UserPolicy) -> bool:
    """Record event key `key` as applied at `ts`; False if it was applied already (change nothing then).
    An empty key is never recorded (callers without event ids: the policy's own tests)."""
    if not key:
        return True
    if key in a.applied:
        return False
    a.applied[key] = ts
    if len(a.applied) > p.max_tracked_draws:
        del a.applied[next(iter(a.applied))]
    a._tail = None
    return True


def _record(a: UserAccount, adj: Adjustment) -> Adjustment:
    a.history.append([adj.ts, adj.previous, adj.new, list(adj.reasons)])
    del a.history[:-HISTORY]
    a._tail = None
    return adj


def review(a: UserAccount, ts: int, p: UserPolicy) -> Adjustment | None:
    """The review due at the first event at or after `next_review`; call before applying the event."""
    if ts < a.next_review:
        return None
    _advance(a, ts, p)
    a.next_review = ts + p.review_period_ms
    pending, a.pending = a.pending, set()
    if pending:
        a._tail = None
    if a.status is Status.FROZEN:
        if ts < a.until:
            return None
        a.status, a.until, a.last_cut = Status.ACTIVE, -1, ts
        new = min(p.ceiling, max(a.limit, p.floor))
        if new == a.limit:
            return None
        adj = Adjustment("review", a.limit, new, (FREEZE_LIFTED,), ts)
        a.limit = new
        return _record(a, adj)
    if a.status is Status.COOLDOWN and ts >= a.until:
        a.status, a.until = Status.ACTIVE, -1
    if pending:
        a.last_cut = ts
        reasons = tuple(r for r in CUT_ORDER if r in pending)
        pct = min(p.max_cut_pct, max(_cut_pct(r, p) for r in reasons))
        new = min(a.limit, max(p.floor, a.limit - a.limit * pct // 100))
        if new == a.limit:
            return None
        adj = Adjustment("review", a.limit, new, reasons, ts)
        a.limit = new
        return _record(a, adj)
    since = max(ts - p.lookback_ms, a.last_cut)
    fresh_on_time = len(a.on_time) - bisect.bisect_right(a.on_time, since)
    if (
        a.status is Status.ACTIVE
        and not a.negatives
        and fresh_on_time >= p.raise_min_on_time
        and a.utilization() <= p.raise_max_utilization
        and a.limit < p.ceiling
    ):
        new = min(p.ceiling, a.limit + a.limit * p.raise_pct // 100)
        if new > a.limit:
            adj = Adjustment("review", a.limit, new, (ON_TIME_REPAYMENTS,), ts)
            a.limit = new
            a.status, a.until = Status.COOLDOWN, ts + p.cooldown_ms
            return _record(a, adj)
    return None


def _cut_pct(reason: str, p: UserPolicy) -> int:
    if reason == LATE_REPAYMENT:
        return p.cut_late_repayment_pct
    if reason == CHARGEBACK_RECEIVED:
        return p.cut_chargeback_pct
    return p.cut_alert_pct


def _negative(a: UserAccount, reason: str, ts: int, p: UserPolicy) -> None:
    _keep(a.negatives, ts, p)
    if reason not in a.pending:
        a.pending.add(reason)
        a._tail = None


def draw(a: UserAccount, payment_id: str, ts: int, amount: int, p: UserPolicy) -> bool:
    """An approved (or review) credit_line payment: it is owed, and can be reversed by its chargeback.
    False (and no change) if this payment drew already."""
    if payment_id in a.draws:
        return False
    _advance(a, ts, p)
    a.outstanding += amount
    a.draws[payment_id] = [ts, amount]
    if len(a.draws) > p.max_tracked_draws:
        del a.draws[next(iter(a.draws))]
    a._tail = None
    return True


def undraw(a: UserAccount, payment_id: str) -> bool:
    """Give back a draw not reversed yet: the payment it was for is declined after all (decided again
    after a crash lost its decision). False if there was none."""
    drawn = a.draws.get(payment_id)
    if drawn is None or len(drawn) > 2:
        return False
    del a.draws[payment_id]
    a.outstanding = max(0, a.outstanding - drawn[1])
    a._tail = None
    return True


def repay(
    a: UserAccount, ts: int, amount: int, on_time: bool, p: UserPolicy, event_id: str = ""
) -> Adjustment | None:
    """A `user` repayment pays the balance down (never below zero). One made after its due time cuts
    the limit at once (REPAYMENT_PAST_DUE); an on-time one counts towards a raise at a review.
    Nothing (and no change) if repayment `event_id` was applied already."""
    if not once(a, "r" + event_id if event_id else "", ts, p):
        return None
    _advance(a, ts, p)
    a.outstanding = max(0, a.outstanding - amount)
    if on_time:
        _keep(a.on_time, ts, p)
        return None
    _keep(a.negatives, ts, p)
    return _cut_now(a, ts, p.cut_late_repayment_pct, (REPAYMENT_PAST_DUE,), p)


def _cut_now(a: UserAccount, ts: int, pct: int, reasons: tuple[str, ...], p: UserPolicy) -> Adjustment | None:
    """Cut the limit at once by `pct` (within the step bound and the floor, like a review's cut); a
    frozen limit stays as it is (nothing is available)."""
    if a.status is Status.FROZEN:
        return None
    a.last_cut = max(a.last_cut, ts)  # a late event must not let older on-time repayments count again
    new = min(a.limit, max(p.floor, a.limit - a.limit * min(pct, p.max_cut_pct) // 100))
    if new == a.limit:
        return None
    adj = Adjustment("cut", a.limit, new, reasons, ts)
    a.limit = new
    return _record(a, adj)


def _freeze(a: UserAccount, ts: int, reasons: tuple[str, ...], p: UserPolicy) -> Adjustment | None:
    """Freeze at once: limit = outstanding, nothing available until the first review `freeze_ms`
    after the latest freezing event; a frozen account's freeze is extended, with no adjustment."""
    _keep(a.negatives, ts, p)
    if a.status is Status.FROZEN:
        a.until = max(a.until, ts + p.freeze_ms)
        return None
    adj = Adjustment("freeze", a.limit, a.outstanding, reasons, ts)
    a.limit = a.outstanding
    a.status, a.until = Status.FROZEN, ts + p.freeze_ms
    a.pending.clear()
    a._tail = None
    return _record(a, adj)


class ChargebackEffect(NamedTuple):
    reversed: int  # the amount of its payment's draw given back (0: none)
    adjustment: Adjustment | None  # the freeze of a fraud chargeback


def chargeback(
    a: UserAccount, payment_id: str, ts: int, p: UserPolicy, chargeback_id: str = "", reason: str = ""
) -> ChargebackEffect:
    """A chargeback: reverses its payment's draw, if it drew. Its `reason` decides the rest: a fraud
    reason (`p.freeze_chargeback_reasons`) freezes the limit at once; any other is a service dispute,
    a cut signal for the next review. No change when chargeback `chargeback_id` was applied already."""
    if not once(a, "c" + chargeback_id if chargeback_id else "", ts, p):
        return ChargebackEffect(0, None)
    _advance(a, ts, p)
    drawn = a.draws.get(payment_id)
    reversed_amount = 0
    if drawn is not None and len(drawn) == 2:
        # Kept, marked, not dropped: a replay of the payment must still find that it drew.
        drawn.append(1)
        a._tail = None
        # Pruning in _advance is memory hygiene only; the window is decided here.
        if drawn[0] > a.clock - p.reversal_window_ms:
            reversed_amount = min(drawn[1], a.outstanding)
            a.outstanding -= reversed_amount
    if reason in p.freeze_chargeback_reasons:
        return ChargebackEffect(reversed_amount, _freeze(a, ts, (FRAUD_FREEZE, FRAUD_CHARGEBACK), p))
    _negative(a, CHARGEBACK_RECEIVED, ts, p)
    return ChargebackEffect(reversed_amount, None)


def alerts(a: UserAccount, ts: int, fired: list[tuple[str, int]], p: UserPolicy) -> Adjustment | None:
    """User alerts raised on the user's payment, as (reason, severity rank): a freeze at once at or above
    the freeze severity, a cut signal for the next review at or above the cut severity."""
    _advance(a, ts, p)
    counted = [(r, s) for r, s in fired if r not in p.ignore_alert_reasons]
    freezing = tuple(r for r, s in counted if s >= p.freeze_alert_rank)
    if freezing:
        return _freeze(a, ts, (FRAUD_FREEZE, *freezing), p)
    if any(s >= p.cut_alert_rank for _, s in counted):
        _negative(a, FRAUD_ALERT, ts, p)
    return None


def unproven(a: UserAccount, ts: int, lookback_ms: int) -> bool:
    """Whether the account has no on-time repayment in the look-back ending at `ts`."""
    return not a.on_time or a.on_time[-1] <= ts - lookback_ms


def pd_features(a: UserAccount, lookback_ms: int) -> dict[str, float]:
    """The PD model's inputs (pricing.USER_FEATURES) from the account as stored: signals counted in the
    look-back ending at the account's own clock, so the same account always gives the same PD (an
    adjustment and an API read of the account it left agree)."""
    since = a.clock - lookback_ms
    return {
        "utilization": min(2.0, a.utilization()),
        "on_time_repayments": float(len(a.on_time) - bisect.bisect_right(a.on_time, since)),
        "bad_signals": float(len(a.negatives) - bisect.bisect_right(a.negatives, since)),
        "frozen": 1.0 if a.status is Status.FROZEN else 0.0,
    }


def override(a: UserAccount, key: str, action: str, limit: int | None, ts: int, p: UserPolicy
             ) -> Adjustment | None:
    """An analyst's override, once per control event `key`: `freeze` (limit = outstanding, nothing
    available, until an analyst unfreezes), `unfreeze` (active again, the limit back to at least the
    floor, as a freeze lifted at a review), `set_limit` (that limit, active again). An adjustment when
    the limit changes; ANALYST_OVERRIDE is its reason."""
    if not once(a, key, ts, p):
        return None
    _advance(a, ts, p)
    previous = a.limit
    if action == "freeze":
        a.status, a.until = Status.FROZEN, UNTIL_UNFROZEN
        a.limit = a.outstanding
        a.pending.clear()
    elif action == "unfreeze":
        if a.status is not Status.FROZEN:
            return None
        a.status, a.until, a.last_cut = Status.ACTIVE, -1, ts
        a.limit = min(p.ceiling, max(a.limit, p.floor))
    elif action == "set_limit" and limit is not None:
        a.status, a.until = Status.ACTIVE, -1
        a.limit = limit
    else:
        raise ValueError(f"unknown override {action!r}")
    a._tail = None
    if a.limit == previous:
        return None
    return _record(a, Adjustment("override", previous, a.limit, (ANALYST_OVERRIDE,), ts))
