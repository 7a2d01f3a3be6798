"""Labels from the stream: fraud chargebacks within the horizon, by payment or by device; late repayments
past the grace period. Scenario tags never enter."""

from __future__ import annotations

from streamrisk.training.export import Chargeback, Export, Repayment
from streamrisk.training.labels import DAY_MS, default_labels, fraud_labels

T = 1_700_000_000_000


def export(payments: list[tuple[str, str, str, int, str]], chargebacks=(), repayments=()) -> Export:
    """payments: (event_id, user, device, ts, method)."""
    e = Export(features=(), clip=20.0)
    for eid, user, device, ts, method in payments:
        e.event_ids.append(eid)
        e.user_ids.append(user)
        e.devices.append(device)
        e.ts.append(ts)
        e.methods.append(method)
        e.rows.append([])
    e.chargebacks += list(chargebacks)
    e.repayments += list(repayments)
    return e


PAYMENTS = [
    ("p1", "u", "thief", T, "card"),
    ("p2", "u", "thief", T + DAY_MS, "card"),
    ("p3", "u", "phone", T + DAY_MS, "card"),  # the owner's own payment
    ("p4", "u", "thief", T + 40 * DAY_MS, "card"),  # beyond the horizon of p1
    ("p5", "v", "thief", T, "card"),  # another user on a device of the same name
    ("p6", "w", "x", T, "card"),
    ("p7", "z", "y", T, "card"),
]


def test_a_fraud_chargeback_within_the_horizon_labels_the_payment_it_names() -> None:
    e = export(PAYMENTS, [Chargeback("p1", "fraud", T + 5 * DAY_MS),
                          Chargeback("p6", "unauthorized", T + 29 * DAY_MS),
                          Chargeback("p7", "fraud", T + 31 * DAY_MS)])  # too late for a 30-day horizon
    assert list(fraud_labels(e, 30 * DAY_MS, "payment")) == [1, 0, 0, 0, 0, 1, 0]
    assert list(fraud_labels(e, 40 * DAY_MS, "payment")) == [1, 0, 0, 0, 0, 1, 1]


def test_a_service_dispute_or_an_unknown_payment_is_no_label() -> None:
    e = export(PAYMENTS, [Chargeback("p1", "not_received", T + DAY_MS), Chargeback("p6", "duplicate", T),
                          Chargeback("nope", "fraud", T)])
    assert fraud_labels(e, 30 * DAY_MS, "device").sum() == 0


def test_device_scope_labels_the_users_payments_from_that_device_within_the_horizon() -> None:
    e = export(PAYMENTS, [Chargeback("p2", "fraud", T + 3 * DAY_MS)])
    # p1 and p2: the thief's device on u's account; not u's own phone, not p4 (39 days on), not user v.
    assert list(fraud_labels(e, 30 * DAY_MS, "device")) == [1, 1, 0, 0, 0, 0, 0]


def test_a_repayment_late_past_the_grace_period_labels_the_credit_payments_due_by_then() -> None:
    due = T + 10 * DAY_MS
    pays = [("c1", "u", "d", T, "credit_line"), ("c2", "u", "d", T + DAY_MS, "card"),
            ("c3", "u", "d", due + DAY_MS, "credit_line"), ("c4", "v", "d", T, "credit_line")]
    late = export(pays, repayments=[Repayment("u", due + 4 * DAY_MS, due), Repayment("v", due + DAY_MS, due)])
    assert list(default_labels(late, 30 * DAY_MS, 3 * DAY_MS)) == [1, 0, 0, 0]  # v: within the grace
    assert default_labels(late, 30 * DAY_MS, 5 * DAY_MS).sum() == 0


def test_analyst_resolutions_label_the_payments_they_resolve() -> None:
    from streamrisk.recording.jsonl import Recorded
    from streamrisk.training.export import AnalystResolution, _label_events
    from streamrisk.training.labels import with_analyst_labels

    e = export(PAYMENTS, [Chargeback("p1", "fraud", T + 5 * DAY_MS)])
    # Read from a recording's reviews topic; a bad record labels nothing.
    recorded = [
        Recorded("app-reviews", "u", b'{"payment_id": "p2", "resolution": "approve", "ts": 1}', None),
        Recorded("app-reviews", "w", b'{"payment_id": "p6", "resolution": "approve", "ts": 1}', None),
        Recorded("app-reviews", "w", b'{"payment_id": "p6", "resolution": "fraud", "ts": 2}', None),
        Recorded("app-reviews", "u", b'{"payment_id": "p1", "resolution": "approve", "ts": 3}', None),
        Recorded("app-reviews", "z", b'{"payment_id": "p7", "resolution": "maybe", "ts": 3}', None),
        Recorded("app-reviews", "z", b"not json", None),
    ]
    passed = list(_label_events(recorded, e))
    assert passed == []  # the backtest never sees them
    assert e.resolutions == [AnalystResolution("p2", "approve", 1), AnalystResolution("p6", "approve", 1),
                             AnalystResolution("p6", "fraud", 2), AnalystResolution("p1", "approve", 3)]
    scoped = fraud_labels(e, 30 * DAY_MS, "device")
    assert list(scoped) == [1, 1, 0, 0, 0, 0, 0]
    y = with_analyst_labels(e, scoped, 30 * DAY_MS)
    # p1: the chargeback beats the analyst's approve; p2: approved, the device scope's label cleared;
    # p6: the latest resolution, fraud.
    assert list(y) == [1, 0, 0, 0, 0, 1, 0]
