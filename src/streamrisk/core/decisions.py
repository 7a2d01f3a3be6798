"""Assembling the contract's output records: risk decisions, fraud alerts, credit adjustments, advance
decisions.

Ids are deterministic hashes of what they decide, so a record repeated after a crash carries the same id
and a downstream consumer can drop the repeat.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

from .events import Advance, Payment, to_major

APPROVE, REVIEW, DECLINE = "approve", "review", "decline"
ACTION_RANK = {APPROVE: 0, REVIEW: 1, DECLINE: 2}


def stable_id(*parts: str) -> str:
    """A 128-bit hex id that depends only on `parts`."""
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def decision_record(
    payment: Payment,
    action: str,
    score: float,
    reasons: Sequence[str],
    rules_version: str,
    now_ms: int | None = None,
) -> dict[str, Any]:
    return {
        "decision_id": stable_id("decision", payment.event_id, rules_version),
        "event_id": payment.event_id,
        "user_id": payment.user_id,
        "merchant_id": payment.merchant_id,
        "ts": payment.ts,
        "action": action,
        "score": score,
        "reasons": list(reasons),
        "rules_version": rules_version,
        "decided_at": now_ms if now_ms is not None else int(time.time() * 1000),
        "amount": to_major(payment.amount),
    }


def alert_record(
    subject_type: str,
    subject_id: str,
    severity: str,
    reasons: Sequence[str],
    event_ids: Sequence[str],
    ts: int,
) -> dict[str, Any]:
    return {
        "alert_id": stable_id("alert", subject_type, subject_id, ",".join(reasons), *event_ids),
        "subject_type": subject_type,
        "subject_id": subject_id,
        "severity": severity,
        "reasons": list(reasons),
        "event_ids": list(event_ids),
        "ts": ts,
    }


def _adjustment(
    subject: tuple[str, str], field: str, id_parts: Sequence[str], previous: int, new: int,
    reasons: Sequence[str], ts: int, event_id: str, policy_version: str, priced: tuple[float, int] | None,
) -> dict[str, Any]:
    """A credit adjustment record; amounts in minor units in, major units out. `priced`: the account's
    (pd, price_bp) after the change, the contract's optional fields (not part of the id)."""
    subject_field, subject_id = subject
    record = {
        "adjustment_id": stable_id(*id_parts),
        subject_field: subject_id,
        f"previous_{field}": to_major(previous),
        f"new_{field}": to_major(new),
        "reasons": list(reasons),
        "ts": ts,
        "event_id": event_id,
        "policy_version": policy_version,
    }
    if priced is not None:
        record["pd"], record["price_bp"] = priced
    return record


def limit_adjustment_record(
    user_id: str,
    previous: int,
    new: int,
    reasons: Sequence[str],
    ts: int,
    event_id: str,
    policy_version: str,
    kind: str = "review",
    priced: tuple[float, int] | None = None,
) -> dict[str, Any]:
    """A `credit-limit-adjustments` record.

    The id hashes the user, the triggering event, the policy version and the kind (a review and a
    freeze can follow the same payment), so a replay after a crash repeats the id, never a new one.
    """
    parts = ("credit-limit", user_id, event_id, policy_version, kind)
    return _adjustment(("user_id", user_id), "limit", parts, previous, new, reasons, ts, event_id,
                       policy_version, priced)


def line_adjustment_record(
    merchant_id: str,
    previous: int,
    new: int,
    reasons: Sequence[str],
    ts: int,
    event_id: str,
    policy_version: str,
    priced: tuple[float, int] | None = None,
) -> dict[str, Any]:
    """A `credit-line-adjustments` record (see limit_adjustment_record)."""
    parts = ("credit-line", merchant_id, event_id, policy_version)
    return _adjustment(("merchant_id", merchant_id), "line", parts, previous, new, reasons, ts, event_id,
                       policy_version, priced)


def advance_decision_record(
    advance: Advance,
    approved: bool,
    reasons: Sequence[str],
    line: int,
    outstanding: int,
    policy_version: str,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """An `advance-decisions` record; `line` and `outstanding` (after the advance) in minor units.

    The id hashes the advance and the credit policy version, as a payment's hashes its ruleset's."""
    return {
        "decision_id": stable_id("advance-decision", advance.event_id, policy_version),
        "event_id": advance.event_id,
        "merchant_id": advance.merchant_id,
        "ts": advance.ts,
        "action": APPROVE if approved else DECLINE,
        "reasons": list(reasons),
        "credit_line": to_major(line),
        "credit_outstanding": to_major(outstanding),
        "decided_at": now_ms if now_ms is not None else int(time.time() * 1000),
        "amount": to_major(advance.amount),
        "credit_available": to_major(max(0, line - outstanding)),
        "policy_version": policy_version,
    }
