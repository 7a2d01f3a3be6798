"""The user limit policy against a brute-force oracle (tests/credit/oracle.py) over random event
sequences, and the invariants a user relies on whatever happens."""

from __future__ import annotations

import itertools

import orjson
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
# The contract's fraud reasons freeze at once; anything else is a service dispute.
reason = st.sampled_from(["fraud", "unauthorized", "not_received", "not_as_described", "other"])
event = st.one_of(
    st.tuples(st.just("pay"), st.integers(1, 150_000), st.lists(alert, max_size=2)),
    st.tuples(st.just("repay"), st.integers(1, 150_000), st.booleans()),
    st.tuples(st.just("chargeback"), st.integers(0, 60), reason),
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
            run.chargeback(pid, ts, y)
            oracle.chargeback(pid, ts, y)
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


SIGNALS = small_policy(lookback_days=4).user
account_ops = st.lists(st.tuples(
    st.integers(-6, 30).map(lambda h: h * HOUR),  # sometimes back in time: a late signal
    st.one_of(
        st.tuples(st.just("pay"), st.integers(1, 3_000), st.lists(alert, max_size=2)),
        st.tuples(st.just("repay"), st.integers(1, 30_000), st.booleans()),
        st.tuples(st.just("chargeback"), st.integers(0, 40), reason),
        st.tuples(st.just("reload"), st.none(), st.none()),
    )), min_size=1, max_size=150)


@settings(max_examples=200, deadline=None)
@given(account_ops)
def test_an_account_is_stored_as_the_json_of_its_fields_whatever_happened_to_it(seq: list) -> None:
    # encode() keeps the signal times' JSON between writes; what it writes is always the plain dump.
    run = UserRun(SIGNALS, "u", T0)
    ts = T0
    for i, (dt, (kind, x, y)) in enumerate(seq):
        ts = max(T0, ts + dt)
        if kind == "pay":
            run.pay(f"p{i}", ts, x, y)
        elif kind == "repay":
            run.repay(ts, x, y)
        elif kind == "chargeback":
            run.chargeback(f"p{x}", ts, y)
        else:  # the book reloads an account from the table after dropping its cache
            run.a = uc.UserAccount.from_list(orjson.loads(run.a.encode()))
        assert run.a.encode() == orjson.dumps(run.a.to_list())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just("keep"), st.integers(0, 2**40)),
                          st.tuples(st.just("keep_newest"), st.integers(0, 1000)),
                          st.tuples(st.just("prune"), st.integers(0, 2**40))), max_size=200),
       st.integers(1, 70))
def test_signal_times_stay_sorted_capped_and_dumped_as_a_list(ops: list, cap: int) -> None:
    times, model = uc.SignalTimes(), []
    for kind, x in ops:
        if kind == "prune":
            times.prune(x)
            model = [t for t in model if t > x]
        else:
            ts = (model[-1] if model else 0) + x if kind == "keep_newest" else x
            times.keep(ts, cap)
            model = sorted([*model, ts])[-cap:]
        assert times == model and times.json() == orjson.dumps(model)
