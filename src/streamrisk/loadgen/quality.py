"""How well the workers decided, per scenario, against the generator's ground-truth labels.

Declines are judged per payment; alerts per subject (a user or merchant with a fraud label at or before
the alert's time is a true positive; `CHARGEBACK` alerts confirm fraud rather than predict it, so they
are left out). A credit decision (`OVER_LIMIT`) on a credit scenario's subject is that scenario's expected
outcome, so it counts as true too. Credit adjustments are judged by what the subject did after them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from .labels import CREDIT, FRAUD, NORMAL, Label
from .scenarios import SCENARIOS

# Alert reasons that report a confirmed fraud instead of predicting one.
CONFIRMATIONS = frozenset({"CHARGEBACK", "UNMATCHED_CHARGEBACK"})
# Reasons that are credit decisions, not fraud calls: a max-out user declined over the limit, or a late
# repayer after the cut, is the credit policy working. Anywhere else they count as false.
CREDIT_DECISIONS = frozenset({"OVER_LIMIT"})


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def decision_quality(labels: Iterable[Label], decisions: dict[str, dict[str, Any]]) -> dict[str, dict]:
    """Per scenario: payments decided, declines and reviews, decline precision and recall, and the
    share of fraud payments flagged at all (review or decline). `all` sums every scenario. A decline
    of a credit-labelled payment for a credit reason is expected, so precise."""
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    for lab in labels:
        if lab.topic != "payments" or lab.label not in (FRAUD, CREDIT, NORMAL):
            continue
        d = decisions.get(lab.event_id)
        for name in (lab.scenario, "all"):
            row = rows[name]
            row["payments"] += 1
            row[lab.label] += 1
            if d is None:
                row["undecided"] += 1
                row[f"undecided_{lab.label}"] += 1
                continue
            action = d["action"]
            row[action] += 1
            row[f"{action}_{lab.label}"] += 1
            if lab.label == CREDIT and action == "decline":
                row["decline_expected"] += bool(CREDIT_DECISIONS.intersection(d.get("reasons", ())))
    out: dict[str, dict] = {}
    for name, r in rows.items():
        flagged_fraud = r["decline_fraud"] + r["review_fraud"]
        # Rates are over decided payments; a payment not decided by the end is counted apart.
        fraud, normal = r[FRAUD] - r[f"undecided_{FRAUD}"], r[NORMAL] - r[f"undecided_{NORMAL}"]
        out[name] = {
            "payments": r["payments"], "fraud_payments": r[FRAUD], "undecided": r["undecided"],
            "decline": r["decline"], "review": r["review"],
            "expected_declines": r["decline_expected"],
            "decline_precision": _ratio(r["decline_fraud"] + r["decline_expected"], r["decline"]),
            "decline_recall": _ratio(r["decline_fraud"], fraud),
            "flag_recall": _ratio(flagged_fraud, fraud),
            # Normal payments that were declined, or held for review: the cost to good customers.
            "normal_decline_rate": _ratio(r["decline_normal"], normal),
            "normal_flag_rate": _ratio(r["decline_normal"] + r["review_normal"], normal),
        }
    return out


def alert_quality(labels: Iterable[Label], alerts: list[dict[str, Any]]) -> dict[str, dict]:
    """Per scenario: its instances, how many got a predictive alert about one of their subjects
    (recall), and the precision of alerts about its subjects. An alert is true when its subject had
    a fraud-labelled event at or before the alert's time, or when it is only a credit decision about
    a credit scenario's subject; alerts about other subjects are counted under `normal` as false
    positives."""
    first_fraud: dict[tuple[str, str], int] = {}
    instances_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    scenario_of_instance: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    other: dict[tuple[str, str], str] = {}  # subjects of non-fraud scenarios (credit)
    credit: set[tuple[str, str]] = set()
    for lab in labels:
        subject = (lab.subject_type, lab.subject_id)
        seen.add(subject)
        if lab.scenario != "normal":
            other[subject] = lab.scenario
        if lab.label == CREDIT:
            credit.add(subject)
        if lab.label == FRAUD:
            if subject not in first_fraud or lab.ts < first_fraud[subject]:
                first_fraud[subject] = lab.ts
            instances_of[subject].add(lab.instance)
            scenario_of_instance[lab.instance] = lab.scenario
    rows: dict[str, Counter[str]] = defaultdict(Counter)
    caught: set[str] = set()
    normal_alerted: set[tuple[str, str]] = set()
    for alert in alerts:
        reasons = set(alert.get("reasons", ())) - CONFIRMATIONS
        if not reasons:
            continue
        subject = (alert["subject_type"], alert["subject_id"])
        fraud_ts = first_fraud.get(subject)
        caught_fraud = fraud_ts is not None and fraud_ts <= alert["ts"]
        true = caught_fraud or (subject in credit and reasons <= CREDIT_DECISIONS)
        if fraud_ts is not None:
            names = {scenario_of_instance[i] for i in instances_of[subject]}
        else:
            names = {other.get(subject, "normal")}
        if caught_fraud:
            caught.update(instances_of[subject])
        if not true:
            normal_alerted.add(subject)
        for key in (*names, "all"):
            rows[key]["alerts"] += 1
            rows[key]["true_alerts"] += true
    instances = Counter(scenario_of_instance.values())
    caught_per = Counter(scenario_of_instance[i] for i in caught)
    out: dict[str, dict] = {}
    for name in {*instances, *rows, "all"}:
        r = rows[name]
        total = sum(instances.values()) if name == "all" else instances[name]
        hits = len(caught) if name == "all" else caught_per[name]
        out[name] = {"instances": total, "alerts": r["alerts"],
                     "alert_precision": _ratio(r["true_alerts"], r["alerts"]),
                     "alert_recall": _ratio(hits, total)}
    clean = seen - set(first_fraud) - set(other)
    rate = _ratio(len(normal_alerted & clean), len(clean))
    out.setdefault("normal", {"alerts": 0}).update(subjects=len(clean), alerted_subject_rate=rate)
    return out


def credit_quality(adjustments: list[dict[str, Any]], defaults: dict[tuple[str, str], list[int]]) -> dict:
    """Cuts and raises of credit limits (users) and lines (merchants), against whether the subject
    later defaulted (a late repayment or a chargeback with a later event time)."""
    out: dict[str, Any] = {}
    for kind, field, prev, new in (("user", "user_id", "previous_limit", "new_limit"),
                                   ("merchant", "merchant_id", "previous_line", "new_line")):
        c: Counter[str] = Counter()
        for adj in adjustments:
            if field not in adj or prev not in adj:
                continue
            later = [t for t in defaults.get((kind, adj[field]), ()) if t > adj.get("ts", 0)]
            before, after = _amount(adj[prev]), _amount(adj[new])
            move = "cut" if after < before else "raise" if after > before else "same"
            c[move] += 1
            c[f"{move}_then_default"] += bool(later)
        defaulted = {s for s in defaults if s[0] == kind}
        out[kind] = {
            "cuts": c["cut"], "cuts_before_default": c["cut_then_default"],
            "cut_precision": _ratio(c["cut_then_default"], c["cut"]),
            "raises": c["raise"], "raises_to_later_defaulters": c["raise_then_default"],
            "subjects_defaulted": len(defaulted),
        }
    return out


def _amount(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def scenario_names() -> list[str]:
    return ["normal", *SCENARIOS]
