"""The demo's traffic (default scenario mix, the demo's 9,000 events) through the worker's core offline:
every credit path happens, each on the subjects of the scenario written for it, and the load test's
quality figures stay sane. The demo and the load test read the same records back from Kafka.

A worker reads the input topics side by side, so besides the order sent, each case also runs with the
records of each batch applied topic by topic, in either order of the topics."""

from __future__ import annotations

from collections import defaultdict

import orjson
import pytest

from streamrisk.loadgen.quality import alert_quality, credit_quality, decision_quality
from streamrisk.loadgen.scenarios import ScenarioTraffic
from streamrisk.loadgen.synthetic import Record
from streamrisk.loadgen.watch import Watch
from tests.pipeline import Pipeline

END = 1_764_000_000_000
N = 9000  # the demo: 30 s at 300 events/s
BATCH = 200
TOPICS = ("payments", "orders", "repayments", "chargebacks", "advances")


def _apart(sent: list, topics: tuple[str, ...]) -> list:
    """Each batch's records topic by topic, in the order `topics` (stable within a topic)."""
    out: list = []
    for i in range(0, len(sent), BATCH):
        out += sorted(sent[i:i + BATCH], key=lambda r: topics.index(r[0]))
    return out


@pytest.fixture(scope="module", params=["as sent", "payments first", "payments last"])
def demo(request: pytest.FixtureRequest) -> dict:
    t = ScenarioTraffic(2000, 200, end_ms=END, days=7, seed=7, run_id="demo", malformed=0.002)
    sent = [t.next(i / N) for i in range(N)]
    records = [r for r in sent if isinstance(r, Record)]
    watch = Watch()
    for r in records:
        watch.on_send(r.topic, r.value, 0.0)
    order = {"as sent": None, "payments first": TOPICS, "payments last": TOPICS[::-1]}[request.param]
    applied = [(r.topic, r.key, r.value) if isinstance(r, Record) else r for r in sent]
    p = Pipeline()
    p.run(applied if order is None else _apart(applied, order), END, batch=BATCH)
    scenario = {(lab.subject_type, lab.subject_id): lab.scenario
                for lab in t.labels if lab.scenario != "normal"}
    adjustments: dict[str, dict[str, set[str]]] = {"limit": defaultdict(set), "line": defaultdict(set)}
    moves = []
    for topic, kind, subject in (("credit-limit-adjustments", "limit", "user"),
                                 ("credit-line-adjustments", "line", "merchant")):
        for a in map(_json, p.records(topic)):
            moves.append(a)
            who = scenario.get((subject, a[f"{subject}_id"]), "normal")
            for reason in a["reasons"]:
                adjustments[kind][reason].add(who)
    decisions = {d["event_id"]: d for d in map(_json, p.records("risk-decisions"))}
    alerts = [_json(a) for a in p.records("fraud-alerts")]
    advances: dict[str, list[tuple[str, str, list[str]]]] = defaultdict(list)  # event_id -> decisions
    for d in map(_json, p.records("advance-decisions")):
        who = scenario.get(("merchant", d["merchant_id"]), "normal")
        advances[d["event_id"]].append((who, d["action"], d["reasons"]))
    return {
        "advances": advances,
        "advances_sent": {r.value["event_id"] for r in records if r.topic == "advances"},
        "adjustments": adjustments,
        "dead_letters": len(p.records("dead-letters")),
        "malformed": len(sent) - len(records),
        "over_limit": {scenario.get(("user", d["user_id"]), "normal") for d in decisions.values()
                       if "OVER_LIMIT" in d["reasons"]},
        "decisions": decision_quality(t.labels, decisions),
        "alerts": alert_quality(t.labels, alerts),
        "credit": credit_quality(moves, watch.defaults),
    }


def _json(value: bytes | dict) -> dict:
    return orjson.loads(value) if isinstance(value, bytes) else value


def test_every_limit_path_happens_on_the_users_written_for_it(demo) -> None:
    limits = demo["adjustments"]["limit"]
    assert limits["ON_TIME_REPAYMENTS"] == {"on_time_repayer"}
    assert "late_repayer" in limits["REPAYMENT_PAST_DUE"]
    assert "charged_back" in limits["FRAUD_CHARGEBACK"]
    fraud = {"velocity_burst", "card_testing", "account_takeover", "bust_out", "charged_back"}
    assert limits["FRAUD_FREEZE"] and limits["FRAUD_FREEZE"] <= fraud
    assert limits["FRAUD_CHARGEBACK"] <= fraud
    assert limits["CHARGEBACK_RECEIVED"] == {"disputed"}  # a service dispute: cut at the review
    assert "credit_maxout" in demo["over_limit"]


def test_every_line_path_happens_on_the_merchants_written_for_it(demo) -> None:
    lines = demo["adjustments"]["line"]
    assert "sales_collapse" in lines["SALES_DECLINE"]
    assert "late_merchant" in lines["LATE_REPAYMENTS"]
    assert {"normal", "sales_collapse", "late_merchant"} <= lines["RECEIVABLES"]


def test_back_dated_histories_are_valid_input_so_only_malformed_records_are_dead_lettered(demo) -> None:
    assert demo["malformed"] > 0
    assert demo["dead_letters"] == demo["malformed"]


def test_credit_outcomes_count_as_expected_and_raises_go_to_good_payers(demo) -> None:
    decisions, alerts = demo["decisions"], demo["alerts"]
    assert decisions["credit_maxout"]["decline"] > 0
    assert decisions["credit_maxout"]["decline_precision"] == 1.0
    assert alerts["credit_maxout"]["alert_precision"] == 1.0
    assert decisions["all"]["decline_precision"] == 1.0
    assert alerts["all"]["alert_precision"] == 1.0
    assert decisions["normal"]["normal_decline_rate"] == 0.0
    user = demo["credit"]["user"]
    assert user["raises"] > 0 and user["raises_to_later_defaulters"] == 0
    assert user["cuts_before_default"] > 0  # late repayers go on repaying late after their cut
    assert demo["credit"]["merchant"]["cuts_before_default"] > 0


def test_merchants_draw_advances_and_each_is_decided_once_within_or_beyond_its_line(demo) -> None:
    advances = demo["advances"]
    assert set(advances) == demo["advances_sent"]
    assert all(len(d) == 1 for d in advances.values())
    outcomes = {(who, action, tuple(reasons)) for [(who, action, reasons)] in advances.values()}
    assert {("merchant_advances", "approve", ()), ("merchant_advances", "decline", ("ADVANCE_OVER_LINE",)),
            ("normal", "approve", ())} <= outcomes
