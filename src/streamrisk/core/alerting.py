"""Fraud alerts: which fired rules become an alert, about whom, naming which events.

User rules are alerted with the payment that fired them; merchant-only rules by the merchant's owner
after every merchant event (`_merchant_alerts`), so no alert depends on where batches split. Dedupe per
subject and reason is the AlertGate's (state/alert_gate.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..features.entities import MerchantState
from ..rules import FiredRule
from ..state.chunks import HeldEvent
from ..state.store import EntityStore, Slot
from .decisions import alert_record
from .records import Out

if TYPE_CHECKING:
    from .processor import Processor

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
    """The Processor's alerting half (a mixin: it reads the processor's state and counters)."""

    def _alert(
        self: Processor,
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
        reasons = self.alert_gate.admit(partition, subject_type, subject_id, severity, ts)
        if reasons:
            worst = max((severity[r] for r in reasons), key=SEVERITY_RANK.__getitem__)
            store, slot, ev = trigger
            event_ids = self._event_ids(store, slot, ev, ts)
            self._emit_alert(out, subject_type, subject_id, worst, reasons, event_ids, ts)

    def _emit_alert(
        self: Processor,
        out: list[Out],
        subject_type: str,
        subject_id: str,
        severity: str,
        reasons: list[str],
        event_ids: list[str],
        ts: int,
    ) -> None:
        counts = self.counters.alerts
        for r in reasons:
            counts[r] = counts.get(r, 0) + 1
        record = alert_record(subject_type, subject_id, severity, reasons, event_ids, ts)
        out.append(Out(self.t_alerts, subject_id, record))

    def _event_ids(
        self: Processor, store: EntityStore[Any], slot: Slot[Any], trigger: HeldEvent, at: int
    ) -> list[str]:
        """The triggering event, then the subject's other events in the lookback before `at` (the
        alert's time)."""
        # Held ids carry a one-letter topic prefix (see the handlers); alerts name contract ids.
        held = store.recent_event_ids(
            slot, at - ALERT_LOOKBACK_MS, at, ALERT_MAX_EVENTS - 1, trigger.event_id
        )
        return [trigger.event_id[1:], *(eid[1:] for eid in held)]

    def _merchant_alerts(self: Processor, merchant_id: str, slot: Slot[MerchantState], ev: HeldEvent) -> None:
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
            self._alert(self._out, subject, fired, slot.entity.latest, (self.merchants, slot, ev))
            if self.credit is not None:  # a merchant fraud alert cuts its credit line at once
                self.credit.on_merchant_alert(merchant_id, slot, [f.severity for f in fired], self._out, ev)
