"""Fraud alerts: which fired rules become an alert, about whom, naming which events.

User rules are alerted with the payment that fired them; merchant-only rules by the merchant's owner
after every merchant event (`Alerting.merchant_event`), so no alert depends on where batches split.
Dedupe per subject and reason is the AlertGate's (state/alert_gate.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..credit.book import CreditBook
from ..features.entities import MerchantState
from ..rules import FiredRule
from ..rules.control import RulesControl
from ..state.alert_gate import AlertGate
from ..state.chunks import HeldEvent
from ..state.store import EntityStore, Slot
from .decisions import alert_record
from .records import Out

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}
# An alert names its triggering event and the subject's other events shortly before it.
ALERT_LOOKBACK_MS = 5 * 60_000
ALERT_MAX_EVENTS = 20


def _strictest(fired: Iterable[FiredRule]) -> dict[str, str]:
    """Reason code -> the highest severity among the fired rules that carry it."""
    out: dict[str, str] = {}
    for f in fired:
        if f.reason not in out or SEVERITY_RANK[f.severity] > SEVERITY_RANK[out[f.reason]]:
            out[f.reason] = f.severity
    return out


class Alerting:
    """Raises the processor's fraud alerts into the `out` it is given; its state is the alert gate."""

    def __init__(
        self, gate: AlertGate, alerts: dict[str, int], topic: str, rules: RulesControl,
        merchants: EntityStore[MerchantState], credit: CreditBook | None,
    ) -> None:
        """`alerts`: the counters' alerts per reason (counted here); `topic`: the fraud-alerts topic;
        `rules`, `merchants` and `credit` are the processor's (read for merchant-only rules)."""
        self.gate = gate
        self.counts = alerts
        self.topic = topic
        self.rules = rules
        self.merchants = merchants
        self.credit = credit

    def alert(
        self,
        out: list[Out],
        subject: tuple[str, str, int],
        fired: Iterable[FiredRule],
        ts: int,
        trigger: tuple[EntityStore[Any], Slot[Any], HeldEvent],
    ) -> None:
        """One alert with the fired rules' reasons not alerted lately for this subject, naming the
        `trigger` event (its subject's store and slot, and the event) and the events before `ts`.

        The events are read only once the gate lets a reason through: a rule that holds for a while
        fires on every event, and the gate drops all but the first within its window.
        """
        subject_type, subject_id, partition = subject
        severity = _strictest(fired)
        reasons = self.gate.admit(partition, subject_type, subject_id, severity, ts)
        if reasons:
            worst = max((severity[r] for r in reasons), key=SEVERITY_RANK.__getitem__)
            store, slot, ev = trigger
            event_ids = _event_ids(store, slot, ev, ts)
            self.emit(out, subject_type, subject_id, worst, reasons, event_ids, ts)

    def emit(
        self,
        out: list[Out],
        subject_type: str,
        subject_id: str,
        severity: str,
        reasons: list[str],
        event_ids: list[str],
        ts: int,
    ) -> None:
        """An alert, not deduped (a chargeback is an incident of its own)."""
        counts = self.counts
        for r in reasons:
            counts[r] = counts.get(r, 0) + 1
        record = alert_record(subject_type, subject_id, severity, reasons, event_ids, ts)
        out.append(Out(self.topic, subject_id, record))

    def merchant_event(
        self, out: list[Out], merchant_id: str, slot: Slot[MerchantState], ev: HeldEvent
    ) -> None:
        """Alert on the merchant-only rules that hold right after `ev`, named after `ev`.

        Evaluated per merchant event, not per batch, so an alert's id, ts and event ids depend on
        the event that crossed the threshold and not on where batches split, and a threshold
        crossed and uncrossed within one batch is still alerted. The alert's time is the merchant's
        newest event time right after `ev` (the moment the features describe), so late events that
        keep a rule true fall within its dedupe window instead of alerting again.
        """
        ruleset = self.rules.ruleset
        if not ruleset.merchant_fields:
            return
        features = slot.entity.features()
        # Most merchant events (forwarded payments, fulfilments) leave the fields the merchant rules
        # read unchanged: then the rules' answer is the same, and CEL is skipped.
        inputs = (ruleset, *[features.get(f) for f in ruleset.merchant_fields])
        if slot.memo is not None and slot.memo[0] == inputs:
            fired = slot.memo[1]
        else:
            fired = ruleset.evaluate_merchant(features)
            slot.memo = (inputs, fired)
        if fired:
            subject = ("merchant", merchant_id, slot.partition)
            self.alert(out, subject, fired, slot.entity.latest, (self.merchants, slot, ev))
            if self.credit is not None:  # a merchant fraud alert cuts its credit line at once
                self.credit.on_merchant_alert(merchant_id, slot, [f.severity for f in fired], out, ev)


def _event_ids(store: EntityStore[Any], slot: Slot[Any], trigger: HeldEvent, at: int) -> list[str]:
    """The triggering event, then the subject's other events in the lookback before `at` (the
    alert's time)."""
    # Held ids carry a one-letter topic prefix (see the handlers); alerts name contract ids.
    held = store.recent_event_ids(slot, at - ALERT_LOOKBACK_MS, at, ALERT_MAX_EVENTS - 1, trigger.event_id)
    return [trigger.event_id[1:], *(eid[1:] for eid in held)]
