"""Rules evaluated as generated Python (rules/pyeval.py) fire exactly as the CEL library decides,
errors counted alike, on generated conditions and hostile contexts."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from streamrisk.rules import Ruleset, RulesetError, default_ruleset, load_ruleset
from streamrisk.rules.pyeval import _div

NUM_FIELDS = ("user.payment_count_5m", "user.amount_zscore_30d", "payment.amount",
              "merchant.refund_rate_24h", "merchant.refund_rate_30d")
STR_FIELDS = ("payment.method", "payment.currency")
LITERALS = ("0.0", "1.0", "-1.0", "2.5", "0.3", "1e300", "1e-300", "3.0e2", "-0.0", ".5")


def _num_expr() -> st.SearchStrategy[str]:
    leaf = st.sampled_from(NUM_FIELDS + LITERALS)

    def grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, st.sampled_from(["+", "-", "*", "/"]), inner)
            .map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            inner.map(lambda e: f"-{e}"),
            st.tuples(_cmp(inner), inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
        )

    return st.recursive(leaf, grow, max_leaves=6)


def _cmp(num: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    ops = st.sampled_from(["<", "<=", ">", ">=", "==", "!="])
    return st.one_of(
        st.tuples(num, ops, num).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(st.sampled_from(STR_FIELDS), st.sampled_from(["==", "!="]),
                  st.sampled_from(["'credit_line'", '"EUR"', "payment.currency", "'é'"]))
        .map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
    )


def _bool_expr() -> st.SearchStrategy[str]:
    num = _num_expr()
    leaf = st.one_of(_cmp(num), st.sampled_from(["true", "false"]),
                     # outside the subset: such a ruleset keeps CEL for every rule
                     st.sampled_from(["payment.amount > 2", "size(payment.method) > 3",
                                      "payment.method in ['card', 'wallet']"]))

    def grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, st.sampled_from(["&&", "||"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            inner.map(lambda e: f"!({e})"),
        )

    return st.recursive(leaf, grow, max_leaves=4)


def _value() -> st.SearchStrategy[Any]:
    usual = st.one_of(
        st.floats(-1e6, 1e6),
        st.integers(-1000, 1000),
        st.sampled_from([0.0, -0.0, 1.0, 0.3, 2.5, 300.0, 1e300, math.inf, -math.inf]),
    )
    hostile = st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(-(2**70), 2**70),
        st.sampled_from([math.nan, 2**53, 2**53 + 1, -(2**53) - 1, 2**63, True, False,
                         "3.5", "nan", "x", None, [1]]),
    )
    # Mostly usual values, so most payments take the fast path and some must leave it.
    return st.integers(0, 19).flatmap(lambda k: hostile if k == 0 else usual)


def _text() -> st.SearchStrategy[Any]:
    usual = st.sampled_from(["credit_line", "card", "EUR", ""])
    hostile = st.one_of(st.sampled_from(["é", "\ud800", 3, None]), st.text(max_size=3))
    return st.integers(0, 9).flatmap(lambda k: hostile if k == 0 else usual)


def _context() -> st.SearchStrategy[dict[str, dict[str, Any]]]:
    fields = [(f, _value()) for f in NUM_FIELDS] + [(f, _text()) for f in STR_FIELDS]
    names = [f for f, _ in fields]
    missing = st.integers(0, 4 * len(names)).map(lambda i: names[i] if i < len(names) else None)

    def build(values: list[Any], drop: str | None) -> dict[str, dict[str, Any]]:
        ctx: dict[str, dict[str, Any]] = {"payment": {}, "user": {}, "merchant": {}}
        for (name, _), value in zip(fields, values, strict=True):
            if name != drop:
                ns, field = name.split(".")
                ctx[ns][field] = value
        return ctx

    return st.builds(build, st.tuples(*[s for _, s in fields]).map(list), missing)


def _twins(conditions: list[str]) -> tuple[Ruleset, Ruleset]:
    raw = {"version": "t", "rules": [
        {"name": f"r{i}", "when": c, "action": "review", "severity": "low", "reason": f"R{i}"}
        for i, c in enumerate(conditions)]}
    fast, cel_only = load_ruleset(raw), load_ruleset(raw)
    cel_only._all.fast = cel_only._merchant.fast = None  # the CEL library alone
    return fast, cel_only


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_bool_expr(), min_size=1, max_size=3), st.lists(_context(), min_size=1, max_size=5))
def test_generated_rules_fire_as_cel_decides(conditions: list[str], contexts: list[dict]) -> None:
    try:
        fast, cel_only = _twins(conditions)
    except RulesetError:
        assume(False)  # e.g. fails on a probe context: never loaded, never evaluated
        return
    for ctx in contexts:
        assert [f.name for f in fast.evaluate(ctx)] == [f.name for f in cel_only.evaluate(ctx)], ctx
        merchant = ctx["merchant"]
        assert fast.evaluate_merchant(merchant) == cel_only.evaluate_merchant(merchant)
    assert fast.error_counts() == cel_only.error_counts()
    assert fast.last_errors() == cel_only.last_errors()


def test_the_default_ruleset_is_evaluated_as_python(default: Ruleset) -> None:
    # Every default rule is in the subset, so a payment costs no CEL call (scripts/bench_rules.py).
    ruleset = default_ruleset()
    assert ruleset._all.fast is not None and ruleset._merchant.fast is not None


def test_division_by_zero_is_ieee_as_in_cel() -> None:
    assert _div(1.0, 0.0) == math.inf and _div(-1.0, 0.0) == -math.inf
    assert _div(1.0, -0.0) == -math.inf and math.isnan(_div(0.0, 0.0))
    assert math.isnan(_div(math.nan, 0.0)) and _div(3.0, 2.0) == 1.5
