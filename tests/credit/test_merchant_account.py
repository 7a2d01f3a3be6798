"""A merchant's credit account: stored as the plain JSON of its fields whatever happened to it (it
keeps its history's JSON between writes), and a line held at 0 by a fraud cut stays 0."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrisk.credit import merchant as mc
from streamrisk.credit.policy import default_policy

from .conftest import DAY, T0

POLICY = default_policy().merchant
inputs = st.builds(
    mc.LineInputs, st.integers(0, 10**9), st.floats(0, 1), st.floats(0, 1), st.integers(0, 10**8),
    st.integers(0, 10**9),
)
ops = st.lists(st.tuples(
    st.integers(0, 3 * DAY),
    st.one_of(
        st.tuples(st.just("reprice"), inputs, st.booleans()),
        st.tuples(st.just("repay"), st.booleans(), st.integers(0, 10**6)),
        st.tuples(st.just("advance"), st.integers(1, 10**6), st.integers(0, 5)),
        st.tuples(st.just("alert"), st.integers(0, 2), st.none()),
        st.tuples(st.just("chargeback"), st.integers(0, 30), st.integers(0, 40)),  # (id, 30-day count)
        st.tuples(st.just("reload"), st.none(), st.none()),
    )), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_a_merchant_account_is_stored_as_the_json_of_its_fields(seq: list) -> None:
    a, ts = mc.open_account(POLICY), T0
    for dt, (kind, x, y) in seq:
        ts += dt
        if kind == "reprice":
            mc.reprice(a, x, ts, POLICY, force=y)
        elif kind == "repay":
            mc.repayment(a, x, POLICY, amount=y)
        elif kind == "advance":  # a few ids, so some are decided already
            mc.advance(a, f"a{y}", ts, x, offset=y)
        elif kind == "alert":
            mc.fraud_alert(a, ts, x, POLICY)
        elif kind == "chargeback":
            counted = mc.chargeback(a, f"c{x}", ts - x * 3_600_000, ts, y, POLICY)
            assert len(a.chargebacks) <= mc.SPIKE_KEPT
            if counted is not None:  # what a spike was decided on: the window's chargebacks only
                assert all(t > ts - POLICY.chargeback_spike_ms for t in a.chargebacks.values())
        else:  # the book reloads an account from the table after dropping its cache
            a = mc.MerchantAccount.from_list(orjson.loads(a.encode()))
        assert a.encode() == orjson.dumps(a.to_list())
        assert mc.MerchantAccount.from_list(orjson.loads(a.encode())) == a


@settings(max_examples=200, deadline=None)
@given(inputs, st.integers(0, 60 * DAY), st.sampled_from([None, 0, 5]))
def test_a_line_held_at_zero_reprices_to_zero_whatever_the_inputs(x: mc.LineInputs, dt: int,
                                                                   late_repayments: int | None) -> None:
    # The book skips repricing such a line (a merchant alerted on every event while held).
    a = mc.open_account(POLICY)
    for _ in range(late_repayments or 0):
        mc.repayment(a, False, POLICY)
    assert mc.fraud_alert(a, T0, 2, POLICY)
    mc.reprice(a, x, T0, POLICY, force=True)
    ts = T0 + dt
    if mc.held_at_zero(a, ts, POLICY):
        assert mc.target(a, x, ts, POLICY)[0] == 0
        assert mc.reprice(a, x, ts, POLICY, force=True) is None
    else:
        assert a.line != 0 or ts >= a.hold_until
