"""Labelled scenario traffic: contract-valid records, ground truth only in the side list, life-like
timelines (chargebacks days later, late repayments), deterministic for a seed."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict

import orjson
import pytest

from streamrisk.core.events import InvalidRecord, Validator
from streamrisk.loadgen import credit_scenarios
from streamrisk.loadgen.credit_scenarios import WEEK
from streamrisk.loadgen.patterns import DAY, HOUR
from streamrisk.loadgen.scenarios import FRAUD, SCENARIOS, RhythmClock, ScenarioTraffic, parse_mix
from streamrisk.loadgen.synthetic import Record

END = 1_764_000_000_000
N = 12_000
V = Validator(frozenset({"CNY"}), max_future_skew_ms=300_000)


def parse(topic: str, key: bytes, raw: bytes, now_ms: int) -> object:
    """The worker's own validation of one record (raises InvalidRecord)."""
    return getattr(V, topic.removesuffix("s"))(key, raw, now_ms)


def _run(seed: int = 3, **kw) -> tuple[ScenarioTraffic, list]:
    mix = parse_mix(",".join(f"{name}=0.004" for name in SCENARIOS))
    t = ScenarioTraffic(500, 60, end_ms=END, days=7, mix=mix, seed=seed, run_id="t", **kw)
    return t, [t.next(i / N) for i in range(N)]


@pytest.fixture(scope="module")
def run() -> tuple[ScenarioTraffic, list]:
    return _run(malformed=0.003)


def test_every_record_is_contract_valid_and_carries_no_label(run) -> None:
    _, records = run
    valid = [r for r in records if isinstance(r, Record)]
    for rec in valid:
        raw = orjson.dumps(rec.value)
        parse(rec.topic, rec.key.encode(), raw, now_ms=END)  # raises InvalidRecord if not
        assert not {"label", "scenario", "fraud"} & set(rec.value)
    malformed = [r for r in records if not isinstance(r, Record)]
    assert malformed, "the malformed share produced nothing"
    broken = 0
    for topic, key, raw in malformed:
        try:
            parse(topic, key.encode(), raw, now_ms=END)
        except InvalidRecord:
            broken += 1
    assert broken == len(malformed)


def test_each_sent_event_has_exactly_one_label(run) -> None:
    traffic, records = run
    ids = [r.value["event_id"] for r in records if isinstance(r, Record)]
    labelled = Counter(lab.event_id for lab in traffic.labels)
    assert all(labelled[e] == 1 for e in ids)
    assert len(traffic.labels) == len(records)


def test_every_scenario_occurs(run) -> None:
    traffic, _ = run
    assert all(traffic.instances[name] > 0 for name in SCENARIOS), traffic.instances


def test_under_the_default_mix_fraud_is_a_small_share_of_payments() -> None:
    t = ScenarioTraffic(2000, 200, end_ms=END, seed=5)
    for i in range(N):
        t.next(i / N)
    kinds = Counter(lab.label for lab in t.labels if lab.topic == "payments")
    assert 0.01 * kinds.total() < kinds[FRAUD] < 0.15 * kinds.total()


def test_events_stay_in_the_past_and_in_order_but_credit_histories(run) -> None:
    traffic, records = run
    label = {lab.event_id: lab for lab in traffic.labels}
    sent = [r.value for r in records if isinstance(r, Record)]
    assert max(v["ts"] for v in sent) <= END
    live = [v["ts"] for v in sent if label[v["event_id"]].scenario not in credit_scenarios.STARTERS]
    assert min(live) >= END - 7 * DAY
    assert sum(1 for a, b in itertools.pairwise(live) if b < a) == 0
    # A credit story's history reaches back at most five weeks before the run, in its own time order.
    stories = defaultdict(list)
    for v in sent:
        lab = label[v["event_id"]]
        if lab.scenario in credit_scenarios.STARTERS:
            stories[lab.instance].append(v["ts"])
    assert {i.split("#")[0] for i in stories} == set(credit_scenarios.STARTERS)
    for ts in stories.values():
        assert ts == sorted(ts) and ts[0] >= END - 7 * DAY - 5 * WEEK


def test_chargebacks_arrive_days_after_the_payment_they_name(run) -> None:
    _, records = run
    paid = {r.value["event_id"]: r.value["ts"] for r in records
            if isinstance(r, Record) and r.topic == "payments"}
    cbs = [r.value for r in records if isinstance(r, Record) and r.topic == "chargebacks"]
    assert cbs
    for cb in cbs:
        assert cb["ts"] - paid[cb["payment_id"]] >= 2 * DAY


def test_late_repayers_repay_after_their_due_date(run) -> None:
    traffic, records = run
    scenario = {lab.event_id: lab.scenario for lab in traffic.labels if lab.topic == "repayments"}
    reps = [r.value for r in records if isinstance(r, Record) and r.topic == "repayments"]
    late = [v for v in reps if scenario[v["event_id"]] == "late_repayer"]
    assert late and all(v["ts"] > v["due_ts"] for v in late)
    normal = [v for v in reps if scenario[v["event_id"]] == "normal"]
    assert normal and all(v["ts"] <= v["due_ts"] for v in normal)


def test_account_takeover_pays_big_from_a_device_the_user_never_used(run) -> None:
    traffic, records = run
    fraud = {lab.event_id for lab in traffic.labels
             if lab.scenario == "account_takeover" and lab.topic == "payments"}
    devices = defaultdict(set)
    for r in records:
        if isinstance(r, Record) and r.topic == "payments" and r.value["event_id"] not in fraud:
            devices[r.key].add(r.value["device_id"])
    takeovers = [r.value for r in records if isinstance(r, Record) and r.value["event_id"] in fraud]
    assert takeovers
    for v in takeovers:
        assert v["device_id"] not in devices[v["user_id"]] and v["amount"] >= 250


def test_every_credit_story_is_told_in_the_first_two_seconds_of_a_demo() -> None:
    t = ScenarioTraffic(2000, 200, end_ms=END, seed=5)  # the default mix
    for i in range(600):  # 2 s at the demo's 300 events/s, of 9,000
        t.next(i / 9000)
    assert all(t.instances[name] >= 1 for name in credit_scenarios.STARTERS), t.instances


def test_same_seed_same_stream() -> None:
    a = _run(seed=11)[1][:3000]
    b = _run(seed=11)[1][:3000]
    c = _run(seed=12)[1][:3000]
    assert a == b and a != c


def test_the_clock_follows_a_daily_rhythm() -> None:
    clock = RhythmClock(END, days=7)
    hours = Counter((clock.at(i / 20_000) // HOUR) % 24 for i in range(20_000))
    assert hours[20] > 5 * hours[3]
    assert clock.at(0) == END - 7 * DAY and clock.at(1.0) == END


@pytest.mark.parametrize("text, problem", [
    ("card_testing", "expected name=share"),
    ("phishing=0.1", "expected name=share"),
    ("card_testing=lots", "must be a number"),
    ("card_testing=0.5", "within 0..0.05"),
])
def test_a_bad_scenario_mix_names_the_problem(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_mix(text)


def test_scenario_mix_none_turns_every_scenario_off() -> None:
    t = ScenarioTraffic(100, 20, end_ms=END, mix=parse_mix("none"), seed=1)
    for i in range(3000):
        t.next(i / 3000)
    assert not any(t.instances.values())
    assert {lab.scenario for lab in t.labels} == {"normal"}
