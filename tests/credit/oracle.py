"""A brute-force oracle of the user limit policy: it keeps every event and rescans the whole history
at each step, instead of the account's pruned, incremental state (credit/user.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from streamrisk.credit.policy import UserPolicy

CUT_PCT = {"LATE_REPAYMENT": "cut_late_repayment_pct", "CHARGEBACK_RECEIVED": "cut_chargeback_pct",
           "FRAUD_ALERT": "cut_alert_pct"}
CUT_ORDER = ("LATE_REPAYMENT", "CHARGEBACK_RECEIVED", "FRAUD_ALERT")


@dataclass
class Oracle:
    p: UserPolicy
    limit: int
    next_review: int
    clock: int
    outstanding: int = 0
    status: str = "active"
    until: int = -1
    last_cut: int = -1
    # every signal ever: (kind, ts, arrival); kind in on_time | negative reasons | "freeze"
    signals: list[tuple[str, int, int]] = field(default_factory=list)
    draws: list[tuple[str, int, int]] = field(default_factory=list)  # (payment id, ts, amount), all
    reversed: set[str] = field(default_factory=set)
    reset_at: int = 0  # arrival index from which signals are "new since the last review"
    n: int = 0
    adjustments: list[tuple] = field(default_factory=list)

    @property
    def available(self) -> int:
        return 0 if self.status == "frozen" else max(0, self.limit - self.outstanding)

    def _tick(self, ts: int) -> None:
        self.n += 1
        self.clock = max(self.clock, ts)

    def review(self, ts: int) -> None:
        if ts < self.next_review:
            return
        p = self.p
        self.next_review = ts + p.review_period_ms
        new_negatives = {k for k, _, i in self.signals if i >= self.reset_at and k in CUT_PCT}
        self.reset_at = self.n + 1
        if self.status == "frozen":
            if ts < self.until:
                return
            self.status, self.until, self.last_cut = "active", -1, ts
            new = min(p.ceiling, max(self.limit, p.floor))
            if new != self.limit:
                self._adjust("review", new, ("FREEZE_LIFTED",), ts)
            return
        if self.status == "cooldown" and ts >= self.until:
            self.status, self.until = "active", -1
        if new_negatives:
            self.last_cut = ts
            reasons = tuple(r for r in CUT_ORDER if r in new_negatives)
            pct = min(p.max_cut_pct, max(getattr(p, CUT_PCT[r]) for r in reasons))
            new = min(self.limit, max(p.floor, self.limit - self.limit * pct // 100))
            if new != self.limit:
                self._adjust("review", new, reasons, ts)
            return
        window = [(k, t) for k, t, _ in self.signals if ts - p.lookback_ms < t <= ts]
        negatives = [t for k, t in window if k != "on_time"]
        on_time = [t for k, t in window if k == "on_time" and t > self.last_cut]
        util = self.outstanding / self.limit if self.limit > 0 else 1.0
        if (self.status == "active" and not negatives and len(on_time) >= p.raise_min_on_time
                and util <= p.raise_max_utilization and self.limit < p.ceiling):
            new = min(p.ceiling, self.limit + self.limit * p.raise_pct // 100)
            if new > self.limit:
                self._adjust("review", new, ("ON_TIME_REPAYMENTS",), ts)
                self.status, self.until = "cooldown", ts + p.cooldown_ms

    def _adjust(self, kind: str, new: int, reasons: tuple[str, ...], ts: int) -> None:
        self.adjustments.append((kind, self.limit, new, reasons, ts))
        self.limit = new

    # -- events (each reviews first, as the processor does)
    def payment(self, pid: str, ts: int, amount: int, alerts: list[tuple[str, int]]) -> bool:
        self.review(ts)
        self._tick(ts)
        approved = amount <= self.available  # what OVER_LIMIT decides
        if approved:
            self.outstanding += amount
            self.draws.append((pid, ts, amount))
        counted = [(r, s) for r, s in alerts if r not in self.p.ignore_alert_reasons]
        if any(s >= self.p.freeze_alert_rank for _, s in counted):
            self._freeze(ts, ("FRAUD_FREEZE", *(r for r, s in counted if s >= self.p.freeze_alert_rank)))
        elif any(s >= self.p.cut_alert_rank for _, s in counted):
            self.signals.append(("FRAUD_ALERT", ts, self.n))
        return approved

    def _freeze(self, ts: int, reasons: tuple[str, ...]) -> None:
        self.signals.append(("freeze", ts, self.n))
        if self.status == "frozen":
            self.until = max(self.until, ts + self.p.freeze_ms)
        else:
            self._adjust("freeze", self.outstanding, reasons, ts)
            self.status, self.until = "frozen", ts + self.p.freeze_ms
            self.reset_at = self.n + 1

    def repayment(self, ts: int, amount: int, on_time: bool) -> None:
        self.review(ts)
        self._tick(ts)
        self.outstanding = max(0, self.outstanding - amount)
        if on_time:
            self.signals.append(("on_time", ts, self.n))
            return
        # Past due: a cut at once, not a signal for the review (but it holds raises off the look-back).
        self.signals.append(("REPAYMENT_PAST_DUE", ts, self.n))
        if self.status == "frozen":
            return
        p = self.p
        self.last_cut = max(self.last_cut, ts)
        pct = min(p.max_cut_pct, p.cut_late_repayment_pct)
        new = min(self.limit, max(p.floor, self.limit - self.limit * pct // 100))
        if new != self.limit:
            self._adjust("cut", new, ("REPAYMENT_PAST_DUE",), ts)

    def chargeback(self, pid: str, ts: int, reason: str) -> None:
        self.review(ts)
        self._tick(ts)
        for d_pid, d_ts, amount in self.draws:
            if d_pid == pid and pid not in self.reversed and d_ts > self.clock - self.p.reversal_window_ms:
                self.reversed.add(pid)
                self.outstanding -= min(amount, self.outstanding)
        if reason in ("fraud", "unauthorized"):
            self._freeze(ts, ("FRAUD_FREEZE", "FRAUD_CHARGEBACK"))
        else:
            self.signals.append(("CHARGEBACK_RECEIVED", ts, self.n))
