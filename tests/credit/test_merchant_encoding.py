"""A merchant's credit account is stored as the plain JSON of its fields, whatever happened to it (the
account keeps its history's JSON between writes)."""

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
        st.tuples(st.just("repay"), st.booleans(), st.none()),
        st.tuples(st.just("alert"), st.integers(0, 2), st.none()),
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
            mc.repayment(a, x, POLICY)
        elif kind == "alert":
            mc.fraud_alert(a, ts, x, POLICY)
        else:  # the book reloads an account from the table after dropping its cache
            a = mc.MerchantAccount.from_list(orjson.loads(a.encode()))
        assert a.encode() == orjson.dumps(a.to_list())
        assert mc.MerchantAccount.from_list(orjson.loads(a.encode())) == a
