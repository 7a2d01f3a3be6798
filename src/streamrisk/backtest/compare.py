"""Two rulesets' decisions on the same payments: tallies, the payments whose action changed, and
precision / recall against chargebacks (a payment named by a chargeback's `payment_id` is fraud).

Pure data, shared by `streamrisk backtest` (offline) and `streamrisk shadow-report` (from topics).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

ACTIONS = ("approve", "review", "decline")
# The actions counted as flagging a payment, for each quality line.
FLAG_LEVELS = {"decline": frozenset({"decline"}), "review or decline": frozenset({"review", "decline"})}
# Action -> the flag levels it counts for.
_LEVELS_OF = {a: tuple(lvl for lvl, acts in FLAG_LEVELS.items() if a in acts) for a in ACTIONS}


@dataclass
class Tally:
    """What one ruleset did: decisions by action, reason codes, alerts, credit adjustments."""

    version: str = ""
    actions: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] | None = field(default_factory=Counter)  # None: not known (a shadow never alerts)
    dead_letters: int = 0
    # "limit raise", "limit cut", "line raise", "line cut" -> count
    credit: Counter[str] = field(default_factory=Counter)
    flagged: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in FLAG_LEVELS})
    versions: Counter[str] = field(default_factory=Counter)  # rules_version of each decision

    def add_decision(self, event_id: str, action: str, reasons: list[str] | tuple[str, ...],
                     rules_version: str = "") -> None:
        self.actions[action] += 1
        tally = self.reasons
        for reason in reasons:  # Counter.update costs more than this for a few reasons
            tally[reason] += 1
        if rules_version:
            self.versions[rules_version] += 1
        flagged = self.flagged
        for level in _LEVELS_OF.get(action, ()):
            flagged[level].add(event_id)

    def add_credit(self, kind: str, previous: float | None, new: float | None) -> None:
        direction = "raise" if (new or 0) > (previous or 0) else "cut"
        self.credit[f"{kind} {direction}"] += 1

    @property
    def decisions(self) -> int:
        return sum(self.actions.values())


@dataclass(frozen=True, slots=True)
class Change:
    """A payment the two rulesets decided differently."""

    event_id: str
    user_id: str
    merchant_id: str
    amount: float
    ts: int
    before: str
    before_reasons: tuple[str, ...]
    after: str
    after_reasons: tuple[str, ...]

    def as_dict(self, fraud: bool) -> dict[str, Any]:
        return {
            "event_id": self.event_id, "user_id": self.user_id, "merchant_id": self.merchant_id,
            "amount": self.amount, "ts": self.ts,
            "before": {"action": self.before, "reasons": list(self.before_reasons)},
            "after": {"action": self.after, "reasons": list(self.after_reasons)},
            "charged_back": fraud,
        }


@dataclass
class Quality:
    """Precision and recall of one flag level against the charged-back payments."""

    flagged: int
    true_positives: int
    frauds: int

    @property
    def precision(self) -> float | None:
        return self.true_positives / self.flagged if self.flagged else None

    @property
    def recall(self) -> float | None:
        return self.true_positives / self.frauds if self.frauds else None


@dataclass
class Comparison:
    """Decisions of ruleset A (the one in force) and B (the candidate) on the same payments."""

    a: Tally = field(default_factory=Tally)
    b: Tally = field(default_factory=Tally)
    changes: list[Change] = field(default_factory=list)
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    compared: int = 0
    agreed_reasons: int = 0  # payments where A and B gave the same action and the same reasons
    decided: set[str] = field(default_factory=set)  # payments both decided
    charged_back: set[str] = field(default_factory=set)  # payment ids named by chargebacks

    def add_pair(self, d_a: dict[str, Any], d_b: dict[str, Any]) -> None:
        """One payment's decision under A and under B (decision records as on risk-decisions)."""
        eid = d_a["event_id"]
        self.compared += 1
        self.decided.add(eid)
        act_a, act_b = d_a["action"], d_b["action"]
        self.transitions[(act_a, act_b)] += 1
        reasons_a, reasons_b = tuple(d_a["reasons"]), tuple(d_b["reasons"])
        if act_a != act_b:
            self.changes.append(Change(
                eid, d_a.get("user_id", ""), d_a.get("merchant_id", ""), d_a.get("amount", 0.0),
                d_a.get("ts", 0), act_a, reasons_a, act_b, reasons_b,
            ))
        elif set(reasons_a) == set(reasons_b):
            self.agreed_reasons += 1

    def add_chargeback(self, payment_id: str) -> None:
        self.charged_back.add(payment_id)

    def quality(self, tally: Tally) -> dict[str, Quality]:
        """Per flag level, over the payments both rulesets decided."""
        frauds = self.charged_back & self.decided
        out = {}
        for level in FLAG_LEVELS:
            flagged = tally.flagged[level] & self.decided
            out[level] = Quality(len(flagged), len(flagged & frauds), len(frauds))
        return out

    @property
    def unmatched_chargebacks(self) -> int:
        """Chargebacks naming a payment outside the compared ones (e.g. before the recording)."""
        return len(self.charged_back - self.decided)

    @property
    def changed(self) -> int:
        return len(self.changes)
