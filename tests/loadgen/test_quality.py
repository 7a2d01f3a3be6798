"""Quality against labels: decline precision and recall per payment, alert precision and recall per
scenario instance, and credit adjustments against later defaults, on hand-made cases."""

from __future__ import annotations

from streamrisk.loadgen.labels import CREDIT, FRAUD, NORMAL, Label
from streamrisk.loadgen.quality import alert_quality, credit_quality, decision_quality

#   t=100 n1 (u1, normal)   t=110 n2 (u2, normal)
#   t=200 f1, t=210 f2 (c1, card_testing#1)   t=300 f3 (v1, velocity_burst#2)   t=400 k1 (k, credit)
LABELS = [
    Label("n1", "payments", "normal", NORMAL, "user", "u1", 100),
    Label("n2", "payments", "normal", NORMAL, "user", "u2", 110),
    Label("f1", "payments", "card_testing", FRAUD, "user", "c1", 200, "card_testing#1"),
    Label("f2", "payments", "card_testing", FRAUD, "user", "c1", 210, "card_testing#1"),
    Label("f3", "payments", "velocity_burst", FRAUD, "user", "v1", 300, "velocity_burst#2"),
    Label("k1", "payments", "credit_maxout", CREDIT, "user", "k", 400, "credit_maxout#3"),
    Label("o1", "orders", "normal", NORMAL, "merchant", "m1", 120),
]
ACTIONS = {"n1": "approve", "n2": "review", "f1": "decline", "f2": "approve", "f3": "decline",
           "k1": "decline"}
DECISIONS = {eid: {"event_id": eid, "action": a} for eid, a in ACTIONS.items()}


def test_decline_precision_and_recall_per_scenario() -> None:
    q = decision_quality(LABELS, DECISIONS)
    card = q["card_testing"]
    assert (card["payments"], card["fraud_payments"], card["decline"]) == (2, 2, 1)
    assert (card["decline_precision"], card["decline_recall"], card["flag_recall"]) == (1.0, 0.5, 0.5)
    assert q["normal"]["normal_decline_rate"] == 0.0 and q["normal"]["normal_flag_rate"] == 0.5
    # f1, f3 and k1 were declined; k1 is a credit case, not fraud.
    assert q["all"]["decline"] == 3 and q["all"]["decline_precision"] == round(2 / 3, 4)


def test_an_over_limit_decline_is_precise_on_a_credit_scenario_only() -> None:
    decisions = {**DECISIONS, "k1": {"event_id": "k1", "action": "decline", "reasons": ["OVER_LIMIT"]},
                 "n1": {"event_id": "n1", "action": "decline", "reasons": ["OVER_LIMIT"]}}
    q = decision_quality(LABELS, decisions)
    assert q["credit_maxout"]["decline_precision"] == 1.0 and q["credit_maxout"]["expected_declines"] == 1
    assert q["normal"]["normal_decline_rate"] == 0.5  # a good customer declined is still a cost
    assert q["all"]["decline"] == 4 and q["all"]["decline_precision"] == 0.75
    fraud_reason = {**DECISIONS, "k1": {"event_id": "k1", "action": "decline", "reasons": ["VELOCITY_5M"]}}
    assert decision_quality(LABELS, fraud_reason)["credit_maxout"]["decline_precision"] == 0.0


def test_an_over_limit_alert_is_true_about_a_credit_subject_only() -> None:
    alerts = [
        {"subject_type": "user", "subject_id": "k", "reasons": ["OVER_LIMIT"], "ts": 400},
        {"subject_type": "user", "subject_id": "k", "reasons": ["OVER_LIMIT", "VELOCITY_5M"], "ts": 400},
        {"subject_type": "user", "subject_id": "u2", "reasons": ["OVER_LIMIT"], "ts": 110},
    ]
    q = alert_quality(LABELS, alerts)
    assert q["credit_maxout"]["alerts"] == 2 and q["credit_maxout"]["alert_precision"] == 0.5
    assert q["normal"]["alert_precision"] == 0.0  # u2 is a good customer
    assert q["normal"]["alerted_subject_rate"] == round(1 / 3, 4)  # of u1, u2 and m1


def test_an_undecided_payment_is_counted_apart_not_as_a_miss() -> None:
    q = decision_quality(LABELS, {k: v for k, v in DECISIONS.items() if k != "f2"})
    assert q["card_testing"]["undecided"] == 1 and q["card_testing"]["decline_recall"] == 1.0


def test_alert_precision_and_recall_per_instance() -> None:
    alerts = [
        {"subject_type": "user", "subject_id": "c1", "reasons": ["CARD_TESTING"], "ts": 210},
        {"subject_type": "user", "subject_id": "c1", "reasons": ["CHARGEBACK"], "ts": 900},  # confirms
        {"subject_type": "user", "subject_id": "u1", "reasons": ["AMOUNT_OUTLIER"], "ts": 100},
        {"subject_type": "user", "subject_id": "v1", "reasons": ["VELOCITY_5M"], "ts": 250},  # before fraud
    ]
    q = alert_quality(LABELS, alerts)
    assert q["card_testing"] == {"instances": 1, "alerts": 1, "alert_precision": 1.0, "alert_recall": 1.0}
    assert q["velocity_burst"]["alert_precision"] == 0.0 and q["velocity_burst"]["alert_recall"] == 0.0
    assert q["normal"]["alerts"] == 1 and q["normal"]["alert_precision"] == 0.0
    # u1, u2 and m1 are the clean subjects; u1 was alerted.
    assert q["normal"]["subjects"] == 3 and q["normal"]["alerted_subject_rate"] == round(1 / 3, 4)
    assert q["all"]["alerts"] == 3 and q["all"]["alert_recall"] == 0.5


def test_credit_cuts_and_raises_are_judged_by_what_came_after() -> None:
    adjustments = [
        {"user_id": "a", "previous_limit": 5000, "new_limit": 2000, "ts": 100},
        {"user_id": "b", "previous_limit": 2000, "new_limit": 3000, "ts": 100},
        {"user_id": "c", "previous_limit": 2000, "new_limit": 3000, "ts": 100},
        {"merchant_id": "m", "previous_line": 9000, "new_line": 1000, "ts": 100},
    ]
    defaults = {("user", "a"): [200], ("user", "b"): [50], ("user", "c"): [150], ("merchant", "m"): [150]}
    q = credit_quality(adjustments, defaults)
    assert q["user"] == {"cuts": 1, "cuts_before_default": 1, "cut_precision": 1.0, "raises": 2,
                         "raises_to_later_defaulters": 1, "subjects_defaulted": 3}
    assert q["merchant"]["cuts"] == 1 and q["merchant"]["cuts_before_default"] == 1
