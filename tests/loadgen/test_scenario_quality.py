"""The shipped scenarios against the default ruleset, offline (the worker's core, no broker): the fraud
scenarios are alerted and good customers are left alone. The load test reports the same on Kafka."""

from __future__ import annotations

import orjson
import pytest

from streamrisk.loadgen.quality import alert_quality, decision_quality
from streamrisk.loadgen.scenarios import ScenarioTraffic, parse_mix
from streamrisk.loadgen.synthetic import Record
from tests.pipeline import Pipeline

END = 1_764_000_000_000
N = 8000
CAUGHT = ("velocity_burst", "card_testing", "account_takeover", "bust_out")


@pytest.fixture(scope="module")
def outcome() -> tuple[dict, dict, dict]:
    mix = parse_mix("velocity_burst=0.003,card_testing=0.003,account_takeover=0.004,bust_out=0.002,"
                    "refund_abuse=0,late_repayer=0.003,credit_maxout=0.003")
    t = ScenarioTraffic(400, 40, end_ms=END, days=7, mix=mix, seed=21, run_id="q")
    records = [t.next(i / N) for i in range(N)]
    p = Pipeline()
    p.run([(r.topic, r.key, r.value) for r in records if isinstance(r, Record)], END, batch=200)
    decisions = {d["event_id"]: d for d in map(_json, p.records("risk-decisions"))}
    alerts = [_json(a) for a in p.records("fraud-alerts")]
    # Users whose limit a fraud chargeback froze (account takeover victims, say), and when.
    frozen = {a["user_id"]: a["ts"] for a in map(_json, p.records("credit-limit-adjustments"))
              if "FRAUD_CHARGEBACK" in a["reasons"]}
    normal_declines = [(d["reasons"], d["ts"] > frozen.get(d["user_id"], d["ts"]))
                       for lab in t.labels if lab.topic == "payments" and lab.label == "normal"
                       for d in [decisions.get(lab.event_id)] if d is not None and d["action"] == "decline"]
    return (t.instances, decision_quality(t.labels, decisions), alert_quality(t.labels, alerts),
            normal_declines)


def _json(value: bytes | dict) -> dict:
    return orjson.loads(value) if isinstance(value, bytes) else value


def test_every_fraud_scenario_is_alerted_and_alerts_are_true(outcome) -> None:
    instances, _, alerts, _ = outcome
    for name in CAUGHT:
        assert instances[name] > 0, f"no {name} was generated"
        assert alerts[name]["alert_recall"] > 0.5, (name, alerts[name])
        assert alerts[name]["alert_precision"] == 1.0, (name, alerts[name])


def test_declines_land_on_fraud_and_spare_good_customers(outcome) -> None:
    _, decisions, alerts, normal_declines = outcome
    assert decisions["normal"]["payments"] > 1000
    # A good customer is declined only over the limit while a fraud chargeback on their account
    # (someone else's payment) holds their credit frozen: the credit policy protecting them.
    assert all("OVER_LIMIT" in reasons and frozen for reasons, frozen in normal_declines), normal_declines
    assert decisions["normal"]["normal_decline_rate"] < 0.001
    assert decisions["normal"]["normal_flag_rate"] < 0.01
    assert alerts["normal"]["alerted_subject_rate"] < 0.01
    for name in ("velocity_burst", "card_testing"):
        assert decisions[name]["decline_precision"] == 1.0 and decisions[name]["decline_recall"] > 0.2
