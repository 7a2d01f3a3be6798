"""Drives credit/user.py as the processor does (review first, then the event), over plain events."""

from __future__ import annotations

from streamrisk.credit import user as uc
from streamrisk.credit.policy import UserPolicy


class UserRun:
    def __init__(self, p: UserPolicy, user_id: str, t0: int) -> None:
        self.p = p
        self.a = uc.open_account(user_id, t0, p)
        self.adjustments: list[uc.Adjustment] = []

    def _review(self, ts: int) -> None:
        adj = uc.review(self.a, ts, self.p)
        if adj is not None:
            self.adjustments.append(adj)

    def pay(self, pid: str, ts: int, amount: int, alerts: list[tuple[str, int]] = ()) -> bool:
        """A credit_line payment, declined when above the available credit (the OVER_LIMIT rule)."""
        self._review(ts)
        approved = amount <= self.a.available
        if approved:
            uc.draw(self.a, pid, ts, amount, self.p)
        if alerts:
            adj = uc.alerts(self.a, ts, list(alerts), self.p)
            if adj is not None:
                self.adjustments.append(adj)
        return approved

    def _keep(self, adj: uc.Adjustment | None) -> None:
        if adj is not None:
            self.adjustments.append(adj)

    def repay(self, ts: int, amount: int, on_time: bool = True) -> None:
        self._review(ts)
        self._keep(uc.repay(self.a, ts, amount, on_time, self.p))

    def chargeback(self, pid: str, ts: int, reason: str = "not_received") -> int:
        """A chargeback (a service dispute unless `reason` says fraud); the amount it reversed."""
        self._review(ts)
        effect = uc.chargeback(self.a, pid, ts, self.p, reason=reason)
        self._keep(effect.adjustment)
        return effect.reversed

    @property
    def limits(self) -> list[int]:
        return [a.new for a in self.adjustments]
