"""Credit losses of each side of a backtest: what the lender lost on the credit it granted.

The traffic is the same for both sides; what differs is which `credit_line` payments each side let draw
(approved or reviewed: book.py draws on exactly those). Per side, over the recording:

- approved credit volume: the sum of the drawn payments' amounts;
- fraud losses: drawn amounts whose payment was charged back with a fraud reason (`fraud`,
  `unauthorized`, CONTRACT.md): the purchase was not the user's, nobody repays it;
- disputed: drawn amounts charged back with any other reason (a service dispute). Shown apart and NOT
  counted as a loss: the dispute is settled with the merchant, the user owes nothing for it;
- default losses: what a user still owes at the end of the recording (drawn, less disputed and fraud
  draws, less the user's repayments, oldest draw repaid first) when their oldest unpaid draw is more than
  `grace_ms` old at the end: unpaid past the grace period is a default, all of the balance is lost. A
  balance with no draw that old is still within grace: shown as `owed within grace`, not a loss.

losses = fraud losses + default losses; loss rate = losses / approved credit volume. The repayments are
the recording's, the same on both sides (a generator's user repays what it planned to, whatever the limit
let it buy); a side that let a user draw less cannot be repaid more than it lent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any

from ..core.events import to_minor
from ..settings import DAY_MS

FRAUD_REASONS = frozenset({"fraud", "unauthorized"})
DRAWING_ACTIONS = frozenset({"approve", "review"})
GRACE_DAYS = 14.0


@dataclass(frozen=True, slots=True)
class CreditDraw:
    user_id: str
    amount: int  # minor units
    ts: int


@dataclass
class SideLosses:
    """One side's credit losses, in minor units."""

    drawn: int = 0  # approved credit volume
    draws: int = 0
    fraud: int = 0
    fraud_draws: int = 0
    disputed: int = 0
    disputed_draws: int = 0
    defaulted: int = 0
    defaulters: int = 0
    owed_in_grace: int = 0

    @property
    def losses(self) -> int:
        return self.fraud + self.defaulted

    @property
    def loss_rate(self) -> float | None:
        return self.losses / self.drawn if self.drawn else None

    def as_dict(self) -> dict[str, Any]:
        return {"approved_credit_volume": self.drawn / 100, "draws": self.draws,
                "fraud_losses": self.fraud / 100, "fraud_draws": self.fraud_draws,
                "disputed": self.disputed / 100,
                "disputed_draws": self.disputed_draws, "default_losses": self.defaulted / 100,
                "defaulters": self.defaulters, "owed_within_grace": self.owed_in_grace / 100,
                "losses": self.losses / 100, "loss_rate": self.loss_rate}


@dataclass
class CreditLedger:
    """The recording's credit events, and which credit payments each side let draw."""

    grace_ms: int = int(GRACE_DAYS * DAY_MS)
    payments: dict[str, CreditDraw] = field(default_factory=dict)  # credit_line payments by event_id
    chargebacks: dict[str, str] = field(default_factory=dict)  # payment_id -> reason (the first one)
    repaid: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # user -> repaid, minor units
    _repayments: set[str] = field(default_factory=set)  # event ids applied (a duplicate counts once)
    drawn: tuple[set[str], set[str]] = field(default_factory=lambda: (set(), set()))  # per side
    end_ts: int = 0

    def observe(self, topic: str, value: Any) -> None:
        """A recorded input record's value (invalid ones are the worker's to dead-letter: skipped here)."""
        if not isinstance(value, dict):
            return
        ts = value.get("ts")
        if not isinstance(ts, int):
            return
        amount = value.get("amount")
        if not isinstance(amount, int | float) or isinstance(amount, bool) or not amount > 0:
            amount = None
        if topic == "payments":
            eid, user = value.get("event_id"), value.get("user_id")
            if value.get("method") == "credit_line" and amount and isinstance(eid, str) \
                    and isinstance(user, str) and eid not in self.payments:
                self.payments[eid] = CreditDraw(user, to_minor(amount), ts)
        elif topic == "chargebacks":
            pid = value.get("payment_id")
            if isinstance(pid, str) and pid not in self.chargebacks:
                self.chargebacks[pid] = str(value.get("reason", ""))
        elif topic == "repayments":
            eid, user = value.get("event_id"), value.get("account_id")
            if (value.get("account_type") == "user" and amount and isinstance(eid, str)
                    and isinstance(user, str) and eid not in self._repayments):
                self._repayments.add(eid)
                self.repaid[user] += to_minor(amount)
        self.end_ts = max(self.end_ts, ts)

    def decided(self, side: int, event_id: str, action: str) -> None:
        """Side 0 (current) or 1 (candidate) decided payment `event_id`; the last decision counts."""
        if event_id in self.payments:
            if action in DRAWING_ACTIONS:
                self.drawn[side].add(event_id)
            else:
                self.drawn[side].discard(event_id)

    def losses(self, side: int, only: Container[str] | None = None) -> SideLosses:
        """The side's losses; `only`: of these payments' draws alone (a user's repayments still pay
        its oldest draws among them first: give all of a user's payments or none)."""
        out = SideLosses()
        owed: dict[str, list[CreditDraw]] = defaultdict(list)
        for eid in self.drawn[side]:
            if only is not None and eid not in only:
                continue
            d = self.payments[eid]
            out.drawn += d.amount
            out.draws += 1
            reason = self.chargebacks.get(eid)
            if reason is None:
                owed[d.user_id].append(d)
            elif reason in FRAUD_REASONS:
                out.fraud += d.amount
                out.fraud_draws += 1
            else:
                out.disputed += d.amount
                out.disputed_draws += 1
        for user, draws in owed.items():
            draws.sort(key=lambda d: d.ts)
            left = self.repaid.get(user, 0)
            unpaid = []
            for d in draws:  # repayments pay the oldest draws first
                paid = min(left, d.amount)
                left -= paid
                if paid < d.amount:
                    unpaid.append((d.ts, d.amount - paid))
            balance = sum(a for _, a in unpaid)
            if not balance:
                continue
            if unpaid[0][0] < self.end_ts - self.grace_ms:
                out.defaulted += balance
                out.defaulters += 1
            else:
                out.owed_in_grace += balance
        return out


def _money(minor: int) -> str:
    return f"{minor / 100:,.2f}"


def format_losses(ledger: CreditLedger, labels: tuple[str, str] = ("current", "candidate")) -> str:
    """The two sides' credit losses side by side, and the target: the current side's losses at most
    half the candidate's, at equal or higher approved credit volume (issue 19, item 6)."""
    a, b = ledger.losses(0), ledger.losses(1)
    grace = ledger.grace_ms / DAY_MS
    lines = [f"credit losses (drawn credit_line payments; default: owed at the end with a draw unpaid "
             f"for more than {grace:g} days)",
             f"{'':<30}{labels[0]:>16}{labels[1]:>16}"]
    rows = [
        ("approved credit volume", _money(a.drawn), _money(b.drawn)),
        ("  draws", str(a.draws), str(b.draws)),
        ("fraud losses (charged back)", _money(a.fraud), _money(b.fraud)),
        ("  draws", str(a.fraud_draws), str(b.fraud_draws)),
        ("default losses", _money(a.defaulted), _money(b.defaulted)),
        ("  users defaulted", str(a.defaulters), str(b.defaulters)),
        ("losses", _money(a.losses), _money(b.losses)),
        ("loss rate", _rate(a.loss_rate), _rate(b.loss_rate)),
        ("disputed (not a loss)", _money(a.disputed), _money(b.disputed)),
        ("owed within grace (not yet)", _money(a.owed_in_grace), _money(b.owed_in_grace)),
    ]
    lines += [f"  {name:<28}{x:>16}{y:>16}" for name, x, y in rows]
    lines.append(verdict(a, b, labels))
    return "\n".join(lines)


def _rate(r: float | None) -> str:
    return "-" if r is None else f"{100 * r:.2f}%"


def verdict(a: SideLosses, b: SideLosses, labels: tuple[str, str] = ("current", "candidate")) -> str:
    """PASS when `a`'s losses are at most half of `b`'s and `a` approved at least as much credit."""
    ratio = a.losses / b.losses if b.losses else None
    volume = a.drawn / b.drawn if b.drawn else None
    shown = "-" if ratio is None else f"{ratio:.3f}"
    vol = "-" if volume is None else f"{volume:.3f}"
    if ratio is None:
        ok = a.losses == 0 and a.drawn >= b.drawn and b.drawn > 0
        why = f"{labels[1]} lost nothing"
    else:
        ok = ratio <= 0.5 and a.drawn >= b.drawn
        why = f"losses {labels[0]}/{labels[1]} {shown} (target <= 0.5)"
    return (f"  target {'PASS' if ok else 'MISS'}: {why}, approved credit volume {labels[0]}/{labels[1]} "
            f"{vol} (target >= 1)")


def format_losses_by_scenario(ledger: CreditLedger, scenario_of: Callable[[str], str],
                              labels: tuple[str, str] = ("current", "candidate")) -> str:
    """Each side's approved credit volume and losses per scenario: a user's draws go to the scenario of
    their first credit payment (`scenario_of(payment id)`), so its repayments stay with them."""
    by_user: dict[str, tuple[int, str]] = {}
    for eid, d in ledger.payments.items():
        first = by_user.get(d.user_id)
        if first is None or d.ts < first[0]:
            by_user[d.user_id] = (d.ts, scenario_of(eid))
    groups: dict[str, set[str]] = defaultdict(set)
    for eid, d in ledger.payments.items():
        groups[by_user[d.user_id][1]].add(eid)
    head = (f"  {'scenario':<18}{'volume ' + labels[0]:>18}{'volume ' + labels[1]:>18}"
            f"{'losses ' + labels[0]:>18}{'losses ' + labels[1]:>18}")
    lines = ["credit losses per scenario (a user's draws under the scenario of their first credit payment)",
             head]
    for name in sorted(groups, key=lambda n: (n == "normal", n)):
        a, b = ledger.losses(0, groups[name]), ledger.losses(1, groups[name])
        if a.drawn or b.drawn:
            lines.append(f"  {name:<18}{_money(a.drawn):>18}{_money(b.drawn):>18}"
                         f"{_money(a.losses):>18}{_money(b.losses):>18}")
    return "\n".join(lines)
