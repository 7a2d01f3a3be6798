"""A merchant's credit line (supply-chain finance) over plain data: its target from the merchant's
receivables and risk, and the band that decides when a new line is published.

    target = advance rate x receivables
             x max(0, 1 - refund_penalty x refund_rate_30d)
             x max(0, 1 - chargeback_penalty x chargeback_rate_30d)
             x clamp(sales trend, sales_decline_floor, 1)
             x (1 - fraud_cut_pct) while a merchant fraud alert holds it
             x (1 - chargeback_spike_cut_pct) while a chargeback spike holds it

The advance rate starts at the policy's and moves with the merchant's own repayments: down a step
for a late one (to a minimum), up a step for an on-time one (back to the policy's).

Advances draw on the published line: one above the available line (line - outstanding) is declined,
an approved one adds to what the merchant owes, and `merchant` repayments pay that down, never below 0.
Each advance is decided once per event id: the account keeps the decisions of its last ADVANCES_KEPT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from ..features.entities import RATE_HORIZON_MS
from .policy import MerchantPolicy

# Reason codes of line adjustments (docs/credit.md).
RECEIVABLES = "RECEIVABLES"
REFUND_RATE = "REFUND_RATE"
CHARGEBACK_RATE = "CHARGEBACK_RATE"
SALES_DECLINE = "SALES_DECLINE"
LATE_REPAYMENTS = "LATE_REPAYMENTS"
MERCHANT_FRAUD_ALERT = "MERCHANT_FRAUD_ALERT"
CHARGEBACK_SPIKE = "CHARGEBACK_SPIKE"
# Reason code of a declined advance (docs/credit.md).
ADVANCE_OVER_LINE = "ADVANCE_OVER_LINE"

HISTORY = 5
# Merchant repayment ids kept to apply each once (a replay after a crash, a producer's retry).
APPLIED_KEPT = 256
# Chargeback ids kept for the spike window (a spike is counted up to this many).
SPIKE_KEPT = 1024
# Advance decisions kept to decide each advance once (a replay after a crash, a producer's retry).
ADVANCES_KEPT = 256


class LineInputs(NamedTuple):
    """What the line reads from the merchant's windows at one event."""

    receivables: int  # minor units: fulfilled in the settlement period less refunds on those orders
    refund_rate_30d: float
    chargeback_rate_30d: float
    sales_day: int  # fulfilled value in the last 24 h (minor units)
    sales_30d: int  # fulfilled value in the last 30 days


class AdvanceDecision(NamedTuple):
    """An advance as decided, kept on the account by its event id (ADVANCES_KEPT)."""

    ts: int
    amount: int
    approved: int  # 1 or 0 (kept as JSON numbers)
    line: int  # the line it was decided against
    outstanding: int  # what the merchant owed after it
    offset: int  # its input offset (-1 unknown): the same offset again is the record read again

    @property
    def reasons(self) -> tuple[str, ...]:
        return () if self.approved else (ADVANCE_OVER_LINE,)


class LineChange(NamedTuple):
    previous: int
    new: int
    reasons: tuple[str, ...]
    ts: int


@dataclass(slots=True)
class MerchantAccount:
    advance_bp: int
    line: int = 0  # the last published line
    hold_until: int = -1  # a merchant fraud alert holds the line cut until then
    history: list[list[Any]] = field(default_factory=list)  # [ts, previous, new, reasons], newest last
    # The last APPLIED_KEPT repayment ids applied, oldest first: each moves the advance rate once.
    applied: list[str] = field(default_factory=list)
    spike_until: int = -1  # a chargeback spike holds the line cut until then
    # Chargeback event id -> ts, of the chargebacks in the spike window (at most SPIKE_KEPT).
    chargebacks: dict[str, int] = field(default_factory=dict)
    outstanding: int = 0  # approved advances less merchant repayments, never below 0
    # Advance id -> its decision (AdvanceDecision's fields), the last ADVANCES_KEPT, oldest first.
    advances: dict[str, list[int]] = field(default_factory=dict)
    # The JSON of history until it changes (reprice): a merchant whose fraud rule keeps firing is
    # written after every batch, with only its hold's end changed.
    _history_json: bytes | None = field(default=None, repr=False, compare=False)
    # The JSON of advances until one is added: at ADVANCES_KEPT it is ~17 KB, ~70 µs to encode.
    _advances_json: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def available(self) -> int:
        """What an advance may draw now: the published line less what is outstanding, at least 0."""
        return max(0, self.line - self.outstanding)

    def utilization(self) -> float:
        """Outstanding / line (above 1 when the line was cut below what is owed; 1.0 owing on no line)."""
        if self.line > 0:
            return self.outstanding / self.line
        return 1.0 if self.outstanding > 0 else 0.0

    def to_list(self) -> list[Any]:
        return [self.advance_bp, self.line, self.hold_until, self.history, self.applied, self.spike_until,
                self.chargebacks, self.outstanding, self.advances]

    def encode(self) -> bytes:
        """orjson.dumps(self.to_list()), byte for byte, with the history's JSON as kept."""
        hist = self._history_json
        if hist is None:
            hist = self._history_json = orjson.dumps(self.history)
        adv = self._advances_json
        if adv is None:
            adv = self._advances_json = orjson.dumps(self.advances)
        rest = orjson.dumps([self.applied, self.spike_until, self.chargebacks, self.outstanding])
        return b"".join((orjson.dumps([self.advance_bp, self.line, self.hold_until])[:-1], b",", hist, b",",
                         rest[1:-1], b",", adv, b"]"))

    @classmethod
    def from_list(cls, v: list[Any]) -> MerchantAccount:
        # Accounts written before `applied` existed have 4 fields, before the spike's 5, before advances 7.
        return cls(v[0], v[1], v[2], v[3], v[4] if len(v) > 4 else [], v[5] if len(v) > 5 else -1,
                   v[6] if len(v) > 6 else {}, v[7] if len(v) > 7 else 0, v[8] if len(v) > 8 else {})


def open_account(p: MerchantPolicy) -> MerchantAccount:
    return MerchantAccount(advance_bp=p.advance_rate_bp)


def settled(a: MerchantAccount, ts: int, p: MerchantPolicy, advances_ms: int = 0) -> bool:
    """Whether the account is a new one in all but its history at `ts`: no line published, the
    policy's advance rate, no fraud hold or chargeback spike running, nothing outstanding, and no
    advance in the `advances_ms` before `ts` (its decision is kept that long at least, so a repeat draws
    nothing). The sweep drops such an account once its merchant's state has expired (book.py): nothing
    it holds changes a decision."""
    newest = max((d[0] for d in a.advances.values()), default=None)
    return (
        a.line == 0 and a.advance_bp == p.advance_rate_bp and a.hold_until < ts and a.spike_until < ts
        and a.outstanding == 0 and (newest is None or newest + advances_ms < ts)
    )


def sales_trend(x: LineInputs) -> float:
    """The last day's sales over the mean day of the last 30 days (1.0 without sales history)."""
    return x.sales_day * 30 / x.sales_30d if x.sales_30d > 0 else 1.0


def target(a: MerchantAccount, x: LineInputs, ts: int, p: MerchantPolicy) -> tuple[int, tuple[str, ...]]:
    """The line the merchant should have now, and the reasons that hold it below advance x receivables."""
    reasons: list[str] = []
    factor = a.advance_bp / 10_000
    if a.advance_bp < p.advance_rate_bp:
        reasons.append(LATE_REPAYMENTS)
    f = max(0.0, 1.0 - p.refund_penalty * x.refund_rate_30d)
    if f < 1.0:
        reasons.append(REFUND_RATE)
        factor *= f
    f = max(0.0, 1.0 - p.chargeback_penalty * x.chargeback_rate_30d)
    if f < 1.0:
        reasons.append(CHARGEBACK_RATE)
        factor *= f
    f = min(1.0, max(p.sales_decline_floor, sales_trend(x)))
    if f < 1.0:
        reasons.append(SALES_DECLINE)
        factor *= f
    if ts < a.hold_until:
        reasons.append(MERCHANT_FRAUD_ALERT)
        factor *= 1 - p.fraud_cut_pct / 100
    if ts < a.spike_until:
        reasons.append(CHARGEBACK_SPIKE)
        factor *= 1 - p.chargeback_spike_cut_pct / 100
    # round, not int: 2000.00 x 0.21 must be 420.00, not 419.99 from 0.21's binary fraction
    return round(x.receivables * factor), tuple(reasons) or (RECEIVABLES,)


def outside_band(previous: int, new: int, p: MerchantPolicy) -> bool:
    """A new line is published only when it moves more than the band from the last published one."""
    return abs(new - previous) > max(previous * p.band_pct // 100, p.band_min)


def reprice(
    a: MerchantAccount, x: LineInputs, ts: int, p: MerchantPolicy, force: bool = False
) -> LineChange | None:
    """The line after an event of the merchant: a change to publish, or None while within the band.

    `force` publishes any change at all (a fraud cut must not wait for the band)."""
    new, reasons = target(a, x, ts, p)
    if new == a.line or not (force or outside_band(a.line, new, p)):
        return None
    change = LineChange(a.line, new, reasons, ts)
    a.line = new
    a.history.append([ts, change.previous, new, list(reasons)])
    del a.history[:-HISTORY]
    a._history_json = None
    return change


def advance(a: MerchantAccount, event_id: str, ts: int, amount: int, offset: int = -1
            ) -> tuple[AdvanceDecision, bool]:
    """Decide advance `event_id` against the available line; an approved one is drawn. Its decision,
    and False when it was decided already (the decision kept then, and no second draw)."""
    kept = a.advances.get(event_id)
    if kept is not None:
        return AdvanceDecision(*kept), False
    approved = amount <= a.available
    if approved:
        a.outstanding += amount
    decision = AdvanceDecision(ts, amount, int(approved), a.line, a.outstanding, offset)
    a.advances[event_id] = list(decision)
    if len(a.advances) > ADVANCES_KEPT:
        del a.advances[next(iter(a.advances))]
    a._advances_json = None
    return decision, True


def repayment(
    a: MerchantAccount, on_time: bool, p: MerchantPolicy, event_id: str = "", amount: int = 0
) -> bool:
    """A `merchant` repayment of an advance: it pays `amount` of the outstanding down (never below 0:
    the rest of an overpayment is not kept), and late ones lower the advance rate, on-time ones
    restore it. False (and no change) if repayment `event_id` was applied already."""
    if event_id:
        if event_id in a.applied:
            return False
        a.applied.append(event_id)
        del a.applied[:-APPLIED_KEPT]
    a.outstanding = max(0, a.outstanding - amount)
    if on_time:
        a.advance_bp = min(p.advance_rate_bp, a.advance_bp + p.on_time_repayment_step_bp)
    else:
        a.advance_bp = max(p.min_advance_rate_bp, a.advance_bp - p.late_repayment_step_bp)
    return True


def held_at_zero(a: MerchantAccount, ts: int, p: MerchantPolicy) -> bool:
    """The line is 0 and a whole fraud cut holds it there at `ts`: `target` is 0 whatever the inputs."""
    return a.line == 0 and ts < a.hold_until and p.fraud_cut_pct == 100


def fraud_alert(a: MerchantAccount, ts: int, severity_rank: int, p: MerchantPolicy) -> bool:
    """A merchant alert at `ts`: True when it (re)starts the hold that cuts the line."""
    if severity_rank < p.fraud_alert_rank:
        return False
    a.hold_until = max(a.hold_until, ts + p.fraud_hold_ms)
    return True


def chargeback(
    a: MerchantAccount, event_id: str, ts: int, latest: int, n_30d: int, p: MerchantPolicy
) -> bool | None:
    """A chargeback at the merchant (`event_id`, at `ts`), counted once per id towards a spike: at least
    `chargeback_spike_count` chargebacks within the spike window ending at `latest` (the merchant's
    clock), and at least `chargeback_spike_factor` x the mean such window of its last 30 days (`n_30d`
    chargebacks, these included). None: counted already, or before the window (no change). False:
    counted. True: counted, and it started a spike, which holds the line cut from `latest` on."""
    if event_id in a.chargebacks:
        return None
    horizon = latest - p.chargeback_spike_ms
    if ts <= horizon:
        return None
    kept = a.chargebacks
    kept[event_id] = ts
    if len(kept) > 1 and min(kept.values()) <= horizon:
        a.chargebacks = kept = {k: t for k, t in kept.items() if t > horizon}
    while len(kept) > SPIKE_KEPT:
        del kept[next(iter(kept))]
    mean = n_30d * p.chargeback_spike_ms / RATE_HORIZON_MS  # per spike window, over the last 30 days
    needed = max(p.chargeback_spike_count, p.chargeback_spike_factor * mean)
    if p.chargeback_spike_cut_pct == 0 or len(kept) < needed:
        return False
    started = latest >= a.spike_until
    a.spike_until = max(a.spike_until, latest + p.chargeback_spike_hold_ms)
    return started


def pd_features(
    a: MerchantAccount, refund_rate_30d: float, chargeback_rate_30d: float, ts: int, p: MerchantPolicy
) -> dict[str, float]:
    """The PD model's inputs (pricing.MERCHANT_FEATURES) at event time `ts` (the merchant's latest event)."""
    step = p.late_repayment_step_bp
    since = ts - p.chargeback_spike_ms
    return {
        "late_repayments": max(0, p.advance_rate_bp - a.advance_bp) / step if step else 0.0,
        "refund_rate_30d": refund_rate_30d,
        "chargeback_rate_30d": chargeback_rate_30d,
        "recent_chargebacks": float(sum(1 for t in a.chargebacks.values() if t > since)),
        "held": 1.0 if ts < a.hold_until or ts < a.spike_until else 0.0,
    }
