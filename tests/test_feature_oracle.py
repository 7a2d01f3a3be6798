"""The chaos test's brute-force feature oracle and credit balances agree with the worker's core on the
same records, and its fault plan and repeat comparison hold what the chaos test promises."""

from __future__ import annotations

import orjson

from streamrisk.core.processor import Message, Processor
from streamrisk.loadgen.synthetic import Record, Traffic
from streamrisk.settings import Settings
from streamrisk.state.kv import DictKV
from tests.chaos import DRAWING, ChaosPlan, credit_bounds, repeat_differences
from tests.feature_oracle import FeatureOracle, compare


def test_oracle_equals_the_core_over_synthetic_traffic() -> None:
    traffic = Traffic(users=15, merchants=4, seed=3)
    t0 = 1_700_000_000_000
    # Two days of event time, a few records out of order, every kind of record in the default mix.
    records = [traffic.next(t0 + i * 90_000 - (i % 7) * 40_000) for i in range(2000)]
    assert all(isinstance(r, Record) for r in records)
    proc = Processor(Settings(), DictKV())
    msgs = [Message(r.topic, 0, i, r.key.encode(), orjson.dumps(r.value)) for i, r in enumerate(records)]
    for i in range(0, len(msgs), 100):
        proc.run_local(msgs[i:i + 100], now_ms=t0 + 3 * 86_400_000)
    oracle = FeatureOracle()
    oracle.add_all(records)
    oracle.add_all(records[:50])  # a duplicate has no second effect
    assert len(oracle.user_clock) == 15 and len(oracle.merchant_clock) == 4
    for u in oracle.user_clock:
        assert compare(oracle.user(u), proc.users.get(u).features()) == {}, u
    for m in oracle.merchant_clock:
        assert compare(oracle.merchant(m), proc.merchants.get(m).features()) == {}, m


def test_credit_bounds_hold_the_core_s_balances_exact_for_users_who_only_pay() -> None:
    traffic = Traffic(users=400, merchants=5, seed=11)
    t0 = 1_700_000_000_000
    records = [traffic.next(t0 + i * 1_000) for i in range(3000)]
    proc = Processor(Settings(), DictKV())
    msgs = [Message(r.topic, 0, i, r.key.encode(), orjson.dumps(r.value)) for i, r in enumerate(records)]
    first: dict[str, str] = {}
    for i in range(0, len(msgs), 100):
        for out in proc.run_local(msgs[i:i + 100], now_ms=t0 + 3_600_000):
            if out.topic.endswith("risk-decisions"):
                first.setdefault(out.value["event_id"], out.value["action"])
    bounds = credit_bounds(records, first)
    exact = [u for u, (low, high) in bounds.items() if low == high]
    assert exact and len(exact) < len(bounds)  # both kinds of user are checked
    assert any(high for _, high in bounds.values())
    assert proc.credit is not None
    for user, (low, high) in bounds.items():
        got = proc.credit.user_view(user)["credit_outstanding"]
        assert low <= round(got * 100) <= high, (user, got, low, high)
    # A draw counted twice (a replayed payment applied again) is outside every user's bounds.
    user = next(u for u, (_, high) in bounds.items() if high)
    twice = [r for r in records if r.topic == "payments" and r.value["user_id"] == user
             and r.value["method"] == "credit_line" and first.get(r.value["event_id"]) in DRAWING]
    assert credit_bounds([*records, twice[0]], first)[user][1] > bounds[user][1]


def test_oracle_reports_a_wrong_or_missing_feature() -> None:
    oracle = FeatureOracle()
    oracle.add(Traffic(users=1, merchants=1, seed=1).payment(1_000, amount=12.5))
    want = oracle.user("u000000")
    assert want["payment_count_5m"] == 1 and want["payment_amount_sum_30d"] == 12.5
    assert compare(want, {**want, "payment_count_1h": 2}) == {"payment_count_1h": (1, 2)}
    assert compare(want, None).keys() == want.keys()


def test_fault_plan_kills_joins_and_stops_within_the_traffic() -> None:
    for kills in (3, 6):
        faults = ChaosPlan(duration_s=40, kills=kills).faults()
        kinds = [k for _, k in faults]
        assert kinds.count("kill") == kills and kinds.count("join") == 1 and kinds.count("stop") == 1
        # The join comes before the stop, so two workers remain after it.
        assert kinds.index("join") < kinds.index("stop")
        times = [t for t, _ in faults]
        assert times == sorted(times) and times[0] > 0 and times[-1] <= 35


def test_broker_kills_are_spread_among_the_worker_faults() -> None:
    kinds = [k for _, k in ChaosPlan(duration_s=90, kills=6, broker_kills=2).faults()]
    assert kinds.count("broker") == 2 and kinds.count("kill") == 6
    first, second = (i for i, k in enumerate(kinds) if k == "broker")
    assert 0 < first < second < len(kinds) - 1 and second - first > 2
    assert [k for _, k in ChaosPlan(kills=0, broker_kills=1).faults()] == ["broker"]


def test_a_repeat_may_differ_only_in_decided_at() -> None:
    first = {"decision_id": "d1", "event_id": "p1", "action": "review", "score": 0.7, "decided_at": 1}
    same = {**first, "decided_at": 2}
    other = {**first, "action": "decline", "score": 0.9, "decided_at": 3}
    extra = {**first, "note": "x"}
    assert repeat_differences({"p1": [first], "p2": [first, same]}) == (1, [])
    repeats, differing = repeat_differences({"p1": [first, same, other, extra]})
    assert repeats == 3
    assert differing == ["p1: {'action': ('review', 'decline'), 'score': (0.7, 0.9)}",
                         "p1: {'note': (None, 'x')}"]
