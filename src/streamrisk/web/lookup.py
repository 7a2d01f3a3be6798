"""The answers of the state API, built from this worker's state (the caller checked it owns the key).

Two accessors keep what other modules own in one place: `decision_of` (the decision outcome the
payment index stores with each payment) and `credit_of` (the credit policy's view of an account).
"""

from __future__ import annotations

from typing import Any

from ..core.decisions import stable_id
from ..core.events import to_major
from ..core.processor import Processor
from ..state.payment_index import IndexedPayment

RECENT_PAYMENTS = 10
DECISION_FIELDS = ("decision_id", "action", "score", "reasons", "rules_version")
CREDIT_FIELDS = {
    "user": ("credit_limit", "credit_outstanding", "credit_available", "pd", "price_bp"),
    "merchant": ("credit_line", "credit_outstanding", "credit_available", "pd", "price_bp"),
}


def decision_of(p: IndexedPayment) -> dict[str, Any] | None:
    """The decision stored with an indexed payment, or None where the index has none for it.

    The decision id is derived from the payment and the rules version, as on `risk-decisions`.
    """
    o = p.outcome
    if o is None:
        return None
    return {
        "decision_id": stable_id("decision", p.payment_id, o.rules_version),
        "action": o.action,
        "score": o.score,
        "reasons": list(o.reasons),
        "rules_version": o.rules_version,
    }


def credit_of(processor: Processor, kind: str, entity_id: str, entity: Any) -> dict[str, Any]:
    """Credit limit (user) or line (merchant) with outstanding and available, in major units, and the
    account's probability of default and price (credit/pricing.py).

    From the credit policy's book when the processor has one; the fields are null without it.
    """
    base: dict[str, Any] = dict.fromkeys(CREDIT_FIELDS[kind])
    book = getattr(processor, "credit", None)
    if book is None:
        return base
    view = book.user_view(entity_id) if kind == "user" else book.merchant_view(entity_id, entity)
    return {**base, **view}


def entity_of(processor: Processor, kind: str, entity_id: str) -> Any | None:
    """What `GET /{kind}s/{id}` answers for: the entity's state; an empty state (features 0,
    `latest_ts` -1) when the sweep removed its state (idle past every window) but kept its credit
    account, whose numbers the answer then shows; None for an id with neither."""
    store = processor.users if kind == "user" else processor.merchants
    entity = store.get(entity_id)
    book = getattr(processor, "credit", None)
    if entity is None and book is not None and book.has_account(kind, entity_id):
        entity = store.factory()  # not kept: a read loads nothing
    return entity


def alerts_of(processor: Processor, subject_type: str, subject_id: str) -> list[dict[str, Any]]:
    """The subject's latest rule alert time per reason code, newest first (from the alert dedupe gate).

    Chargeback alerts are never deduped, so not in the gate: they show as `charged_back` payments.
    """
    reasons = {r.reason for r in processor.rules.ruleset.rules}
    gate, out = processor.alert_gate, []
    for reason in sorted(reasons):
        raw = gate.kv.get(gate._key(subject_type, subject_id, reason))
        if raw is not None:
            out.append({"reason": reason, "ts": int(raw)})
    out.sort(key=lambda a: a["ts"], reverse=True)
    return out


def merchant_decisions_of(processor: Processor, merchant_id: str) -> list[dict[str, Any]]:
    """The merchant's last decisions, newest payment first, as on `risk-decisions` (but `decided_at`).

    Kept by the merchant's owner as the payments were forwarded to it, with their decisions
    (state/merchant_decisions.py).
    """
    return [
        {
            "decision_id": stable_id("decision", f.event_id[1:], o.rules_version),
            "event_id": f.event_id[1:],
            "user_id": f.user_id,
            "merchant_id": merchant_id,
            "ts": f.ts,
            "amount": to_major(f.amount),
            "action": o.action,
            "score": o.score,
            "reasons": list(o.reasons),
            "rules_version": o.rules_version,
        }
        for f in processor.merchant_decisions.recent(merchant_id)
        if (o := f.outcome) is not None  # every kept record carries one
    ]


def payment_body(p: IndexedPayment, user_id: str) -> dict[str, Any]:
    return {
        "event_id": p.payment_id,
        "user_id": user_id,
        "merchant_id": p.merchant_id,
        "ts": p.ts,
        "amount": to_major(p.amount),
        "charged_back": p.chargeback_id is not None,
        "chargeback_id": p.chargeback_id,
        "decision": decision_of(p),
    }


def user_body(processor: Processor, user_id: str, entity: Any, partition: int) -> dict[str, Any]:
    recent = processor.payment_index.recent(user_id, RECENT_PAYMENTS)
    return {
        "user_id": user_id,
        "partition": partition,
        "latest_ts": entity.latest,
        "features": entity.features(),
        **credit_of(processor, "user", user_id, entity),
        "recent_payments": [payment_body(p, user_id) for p in recent],
        "alerts": alerts_of(processor, "user", user_id),
    }


def merchant_body(processor: Processor, merchant_id: str, entity: Any, partition: int) -> dict[str, Any]:
    return {
        "merchant_id": merchant_id,
        "partition": partition,
        "latest_ts": entity.latest,
        "features": entity.features(),
        **credit_of(processor, "merchant", merchant_id, entity),
        "recent_decisions": merchant_decisions_of(processor, merchant_id),
        "alerts": alerts_of(processor, "merchant", merchant_id),
    }


def review_body(case: dict[str, Any], audit: bool = False) -> dict[str, Any]:
    """A review case as the API shows it (state/reviews.py), amounts in major units; with its audit
    trail (oldest first) when `audit`."""
    body = {k: v for k, v in case.items() if k != "audit"}
    body["amount"] = to_major(case["amount"])
    audit_trail = case.get("audit", [])
    body["resolutions"] = len(audit_trail)
    if audit:
        body["audit"] = audit_trail
    return body
