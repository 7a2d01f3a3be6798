"""The user limit policy against a brute-force oracle (tests/credit/oracle.py) over random event
sequences, and the invariants a user relies on whatever happens."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from streamrisk.credit import user as uc

from .conftest import DAY, T0, small_policy
from .driver import UserRun
from .oracle import Oracle

HOUR = DAY // 24
P = small_policy(max_tracked_draws=10_000, cooldown_days=14, freeze_days=10).user

alert = st.sampled_from([("VELOCITY_5M", 2), ("DEVICE_HOPPING", 1), ("AMOUNT_OUTLIER", 0),
                         ("USER_CHARGEBACKS", 2)])
event = st.one_of(
    st.tuples(st.just("pay"), st.integers(1, 150_000), st.lists(alert, max_size=2)),
    st.tuples(st.just("repay"), st.integers(1, 150_000), st.booleans()),
    st.tuples(st.just("chargeback"), st.integers(0, 60), st.none()),
)
# Mostly forward in time, sometimes a little back (late events), in steps of hours to weeks.
step = st.integers(-48, 10 * 24).map(lambda h: h * HOUR)
sequences = st.lists(st.tuples(step, event), min_size=1, max_size=60)


def replay(seq: list) -> tuple[UserRun, Oracle]:
    run = UserRun(P, "u", T0)
    oracle = Oracle(P, limit=P.initial_limit, next_review=T0 + P.review_period_ms, clock=T0)
    ts = T0
    pids: list[str] = []
    for i, (dt, (kind, x, y)) in enumerate(seq):
        ts = max(T0, ts + dt)
        if kind == "pay":
            pid = f"p{i}"
            pids.append(pid)
            assert run.pay(pid, ts, x, y) == oracle.payment(pid, ts, x, y)
        elif kind == "repay":
            run.repay(ts, x, y)
            oracle.repayment(ts, x, y)
        else:
            pid = pids[x % len(pids)] if pids else "none"
            run.chargeback(pid, ts)
            oracle.chargeback(pid, ts)
    return run, oracle


@settings(max_examples=300, deadline=None)
@given(sequences)
def test_account_matches_the_brute_force_oracle(seq: list) -> None:
    run, oracle = replay(seq)
    assert [tuple(a) for a in run.adjustments] == oracle.adjustments
    a = run.a
    assert (a.limit, a.outstanding, a.available, a.status.value) == (
        oracle.limit, oracle.outstanding, oracle.available, oracle.status)


@settings(max_examples=300, deadline=None)
@given(sequences)
def test_every_step_respects_bounds_floor_ceiling_and_cooldown(seq: list) -> None:
    run, _ = replay(seq)
    raises = []
    for adj in run.adjustments:
        if adj.kind == "freeze":
            assert adj.new == adj.previous or adj.reasons[0] == uc.FRAUD_FREEZE
            continue
        if adj.reasons == (uc.FREEZE_LIFTED,):
            assert adj.new == P.floor
            continue
        assert P.floor <= adj.new <= P.ceiling
        if adj.new > adj.previous:
            assert adj.new <= adj.previous * (100 + P.max_raise_pct) // 100
            raises.append(adj.ts)
        else:
            assert adj.new >= adj.previous * (100 - P.max_cut_pct) // 100
    assert all(b - a >= P.cooldown_ms for a, b in itertools.pairwise(raises))
    a = run.a
    assert a.outstanding >= 0 and 0 <= a.available <= max(a.limit, 0)
