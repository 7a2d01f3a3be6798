"""Labels from the stream itself, never from a side file: a payment is fraud when a chargeback with a fraud
reason names it within the horizon; a user defaults when a repayment of theirs is late past the grace
period, which marks their credit-line payments due by then. Analysts' resolutions of review cases (the
reviews control topic, when the recording holds it) label the payments they resolve: `fraud` is fraud,
`approve` is good unless a fraud chargeback names that payment itself (`with_analyst_labels`)."""

from __future__ import annotations

from collections import defaultdict
from typing import Final

import numpy as np

from .export import Export

#: Chargeback reasons that say the payment was not the user's (CONTRACT.md); any other is a dispute.
FRAUD_REASONS: Final = frozenset({"fraud", "unauthorized"})
DAY_MS: Final = 86_400_000
SCOPES: Final = ("payment", "device")


def fraud_labels(export: Export, horizon_ms: int, scope: str = "payment") -> np.ndarray:
    """1.0 for each payment named by a fraud chargeback that came at most `horizon_ms` after it.

    scope "device": the chargeback also marks the user's other payments from the same device within the
    horizon of the disputed one (a fraudster disputes some of their payments, not all, and a taken-over
    account pays from the thief's device, not the owner's).
    """
    if scope not in SCOPES:
        raise ValueError(f"label scope must be one of {SCOPES}, got {scope!r}")
    index = {eid: i for i, eid in enumerate(export.event_ids)}
    y = np.zeros(len(export), dtype=np.float64)
    disputed: list[int] = []
    for cb in export.chargebacks:
        i = index.get(cb.payment_id)
        if i is None or cb.reason not in FRAUD_REASONS or cb.ts - export.ts[i] > horizon_ms:
            continue
        y[i] = 1.0
        disputed.append(i)
    if scope == "device" and disputed:
        by_device: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, (user, device) in enumerate(zip(export.user_ids, export.devices, strict=True)):
            if device:
                by_device[(user, device)].append(i)
        for i in disputed:
            device = export.devices[i]
            if not device:
                continue
            t = export.ts[i]
            for j in by_device[(export.user_ids[i], device)]:
                if abs(export.ts[j] - t) <= horizon_ms:
                    y[j] = 1.0
    return y


def default_labels(export: Export, horizon_ms: int, grace_ms: int) -> np.ndarray:
    """1.0 for each credit-line payment of a user who repaid late past `grace_ms`, made at most
    `horizon_ms` before the due date missed."""
    missed: dict[str, list[int]] = defaultdict(list)
    for r in export.repayments:
        if r.ts > r.due_ts + grace_ms:
            missed[r.user_id].append(r.due_ts)
    y = np.zeros(len(export), dtype=np.float64)
    for i, user in enumerate(export.user_ids):
        dues = missed.get(user)
        if dues and export.methods[i] == "credit_line":
            t = export.ts[i]
            if any(0 <= due - t <= horizon_ms for due in dues):
                y[i] = 1.0
    return y


def analyst_labels(export: Export) -> tuple[np.ndarray, np.ndarray]:
    """(fraud, good): 1.0 for each payment whose latest analyst resolution is `fraud`, resp. `approve`."""
    index = {eid: i for i, eid in enumerate(export.event_ids)}
    latest: dict[int, tuple[int, str]] = {}
    for r in export.resolutions:
        i = index.get(r.payment_id)
        if i is not None and (i not in latest or r.ts >= latest[i][0]):
            latest[i] = (r.ts, r.resolution)
    fraud = np.zeros(len(export), dtype=np.float64)
    good = np.zeros(len(export), dtype=np.float64)
    for i, (_, resolution) in latest.items():
        (fraud if resolution == "fraud" else good)[i] = 1.0
    return fraud, good


def with_analyst_labels(export: Export, y: np.ndarray, horizon_ms: int) -> np.ndarray:
    """`y` (fraud labels of any scope) with the analysts' say: a payment resolved `fraud` is fraud; one
    resolved `approve` is good, but for a fraud chargeback naming it (the bank's word beats the
    analyst's; an approve does clear a label the device scope spread to it)."""
    if not export.resolutions:
        return y
    fraud, good = analyst_labels(export)
    direct = fraud_labels(export, horizon_ms, "payment")
    out = np.where((good == 1.0) & (direct == 0.0), 0.0, y)
    return np.maximum(out, fraud)
