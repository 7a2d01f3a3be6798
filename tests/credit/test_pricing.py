"""Risk-based pricing (credit/pricing.py): PD bounds and monotonicity, the pricing table, the `pricing:`
section's validation, and adjustments and API reads carrying `pd` and `price_bp`."""

from __future__ import annotations

import copy
import math
from importlib import resources
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrisk.core.decisions import limit_adjustment_record, line_adjustment_record
from streamrisk.credit import pricing as pc
from streamrisk.credit import user as uc
from streamrisk.credit.policy import CreditPolicy, PolicyError, default_policy, load_policy
from streamrisk.loadgen import patterns as pt
from tests.pipeline import Pipeline

from .conftest import DAY, T0, policy_mapping
from .test_worked_example import NOW, merchant_story, user_story


def with_pricing(**changes: Any) -> dict[str, Any]:
    raw = policy_mapping()
    raw["pricing"] = {**copy.deepcopy(pc.DEFAULT_PRICING), **changes}
    return raw


def problems(raw: dict[str, Any]) -> str:
    with pytest.raises(PolicyError) as e:
        load_policy(raw)
    return str(e.value)


# -- the policy's section

def test_the_shipped_file_holds_the_shipped_pricing() -> None:
    text = resources.files("streamrisk.credit").joinpath("default_policy.yaml").read_text("utf-8")
    assert yaml.safe_load(text)["pricing"] == pc.DEFAULT_PRICING


def test_a_policy_file_without_pricing_gets_the_shipped_pricing() -> None:
    raw = policy_mapping()
    del raw["pricing"]
    assert load_policy(raw).pricing == default_policy().pricing
    built = default_policy()
    assert CreditPolicy(built.version, built.user, built.merchant).pricing == built.pricing


def test_a_weight_of_the_wrong_sign_is_refused_by_name() -> None:
    raw = with_pricing()
    raw["pricing"]["user"]["weights"]["bad_signals"] = -1.0
    raw["pricing"]["user"]["weights"]["on_time_repayments"] = 0.5
    msg = problems(raw)
    assert ("pricing.user.weights.bad_signals must be >= 0: more bad_signals must not lower the PD (got -1.0)"
            in msg)
    assert "pricing.user.weights.on_time_repayments must be <= 0" in msg


def test_an_unknown_feature_and_a_missing_intercept_are_named() -> None:
    raw = with_pricing()
    raw["pricing"]["user"]["weights"]["tenure"] = 1.0
    del raw["pricing"]["merchant"]["intercept"]
    msg = problems(raw)
    assert "pricing.user.weights: unknown key(s) ['tenure']" in msg
    assert "pricing.merchant.intercept is missing" in msg


def band(max_pd: float, price_bp: float) -> dict[str, float]:
    return {"max_pd": max_pd, "price_bp": price_bp}


@pytest.mark.parametrize(("bands", "expected"), [
    ([band(0.05, 900), band(0.02, 1000), band(1.0, 2000)],
     "pricing.bands[2].max_pd (0.02) must be above the band before (0.05)"),
    ([{"max_pd": 0.05, "price_bp": 900}, {"max_pd": 1.0, "price_bp": 800}],
     "pricing.bands[2].price_bp (800) must not be below the band before (900): a riskier band never costs "
     "less"),
    ([{"max_pd": 0.05, "price_bp": 900}, {"max_pd": 0.5, "price_bp": 1000}],
     "pricing.bands: the last band's max_pd must be 1.0 (got 0.5)"),
    ([{"max_pd": 1.0, "price_bp": 12.5}], "pricing.bands[1].price_bp must be a whole number (got 12.5)"),
    ([], "pricing.bands must be a non-empty list of {max_pd, price_bp}"),
])
def test_a_pricing_table_that_is_not_monotone_or_complete_is_refused(bands: list[Any], expected: str) -> None:
    assert expected in problems(with_pricing(bands=bands))


def test_lgd_outside_zero_one_is_refused() -> None:
    assert "pricing.lgd must be within [0.0, 1.0] (got 1.5)" in problems(with_pricing(lgd=1.5))


# -- the price

def test_price_is_the_first_band_at_or_above_the_pd() -> None:
    p = default_policy().pricing
    assert [p.price_bp(x) for x in (0.0, 0.01, 0.0101, 0.03, 0.05, 0.2, 0.2001, 1.0)] == [
        900, 900, 1400, 1400, 2200, 3500, 6000, 6000]
    assert [p.band_label(i) for i in range(5)] == ["0-0.01", "0.01-0.03", "0.03-0.08", "0.08-0.2", "0.2-1"]


@given(st.lists(st.floats(0.0, 1.0), min_size=2, max_size=20))
def test_price_never_falls_as_the_pd_rises(pds: list[float]) -> None:
    p = default_policy().pricing
    prices = [p.price_bp(x) for x in sorted(pds)]
    assert prices == sorted(prices)


# -- the PD

FEATURES = st.fixed_dictionaries({
    "utilization": st.floats(0.0, 2.0), "on_time_repayments": st.integers(0, 64).map(float),
    "bad_signals": st.integers(0, 64).map(float), "frozen": st.sampled_from([0.0, 1.0]),
})


@given(FEATURES, st.integers(1, 20))
@settings(max_examples=200)
def test_pd_is_a_probability_and_rises_with_every_bad_signal(features: dict[str, float], more: int) -> None:
    model = default_policy().pricing.user
    pd = model.pd(features)
    assert 0.0 <= pd <= 1.0
    assert pd == round(pd, pc.PD_DIGITS)
    assert model.pd({**features, "bad_signals": features["bad_signals"] + more}) >= pd
    assert model.pd({**features, "on_time_repayments": features["on_time_repayments"] + more}) <= pd
    assert model.pd({**features, "frozen": 1.0}) >= pd


def test_pd_is_the_logistic_of_the_weighted_features() -> None:
    model = default_policy().pricing.user
    f = {"utilization": 0.5, "on_time_repayments": 2.0, "bad_signals": 1.0, "frozen": 0.0}
    z = -4.8 + 1.5 * 0.5 - 0.25 * 2 + 0.9 * 1
    assert model.pd(f) == round(1 / (1 + math.exp(-z)), 4)
    assert model.pd({**f, "bad_signals": 1000.0}) == 1.0
    assert model.pd({**f, "on_time_repayments": 1e6}) == 0.0  # no overflow


def test_more_late_repayments_raise_an_accounts_pd() -> None:
    pol = default_policy()
    a = uc.open_account("u1", T0, pol.user)
    uc.draw(a, "p1", T0, 100_000, pol.user)
    pds = []
    for i in range(4):
        pds.append(pol.pricing.user.pd(uc.pd_features(a, pol.user.lookback_ms)))
        uc.repay(a, T0 + (i + 1) * DAY, 1_000, False, pol.user, f"r{i}")
    assert pds == sorted(pds) and len(set(pds)) == len(pds), pds


def test_signals_out_of_the_look_back_no_longer_count() -> None:
    pol = default_policy()
    a = uc.open_account("u1", T0, pol.user)
    uc.repay(a, T0, 0, False, pol.user, "late")
    assert uc.pd_features(a, pol.user.lookback_ms)["bad_signals"] == 1
    a.clock = T0 + 31 * DAY  # counted at the account's clock, pruned or not
    assert uc.pd_features(a, pol.user.lookback_ms)["bad_signals"] == 0


# -- on the wire and in the API

def test_records_without_a_price_are_unchanged_and_the_price_is_not_in_the_id() -> None:
    plain = limit_adjustment_record("u", 100, 200, ["R"], 1, "e", "v")
    assert "pd" not in plain and "price_bp" not in plain
    priced = limit_adjustment_record("u", 100, 200, ["R"], 1, "e", "v", priced=(0.0123, 1400))
    assert {k: v for k, v in priced.items() if k not in ("pd", "price_bp")} == plain
    assert (priced["pd"], priced["price_bp"]) == (0.0123, 1400)
    line = line_adjustment_record("m", 100, 200, ["R"], 1, "e", "v", priced=(0.5, 6000))
    assert line["adjustment_id"] == line_adjustment_record("m", 100, 200, ["R"], 1, "e", "v")["adjustment_id"]


def test_every_adjustment_carries_the_pd_and_price_of_the_account_it_left() -> None:
    pipe = Pipeline()
    pipe.run(user_story() + merchant_story(), NOW, batch=1)
    limits = pipe.records("credit-limit-adjustments")
    lines = pipe.records("credit-line-adjustments")
    assert len(limits) == 2 and len(lines) == 5
    pricing = pipe.proc.credit.policy.pricing
    for a in limits + lines:
        assert 0.0 < a["pd"] < 1.0 and a["price_bp"] == pricing.price_bp(a["pd"])
    # The raise (3 on-time repayments, 200.00 of 2 400.00 drawn) prices lower than the cut after a late one.
    raise_, cut = limits
    assert raise_["pd"] == round(1 / (1 + math.exp(4.8 - 1.5 * 200 / 2400 + 0.25 * 3)), 4)
    assert cut["pd"] > raise_["pd"]
    # The last adjustment is the last change to the account: the API shows the same numbers.
    view = pipe.proc.credit.user_view("u-ex")
    assert (view["pd"], view["price_bp"]) == (cut["pd"], cut["price_bp"])
    # The line's PD rises as late repayments and refunds hold it down.
    assert [x["pd"] for x in lines] == sorted(x["pd"] for x in lines)
    mview = pipe.proc.credit.merchant_view("m-ex", pipe.proc.merchants.get("m-ex"))
    assert (mview["pd"], mview["price_bp"]) == (lines[-1]["pd"], lines[-1]["price_bp"])


def test_a_user_without_an_account_shows_a_new_accounts_price() -> None:
    pipe = Pipeline()
    view = pipe.proc.credit.user_view("nobody")
    assert (view["pd"], view["price_bp"]) == (0.0082, 900)


def test_expected_loss_by_segment_and_band_is_the_sum_over_the_accounts_in_the_table() -> None:
    pipe = Pipeline()
    story = user_story() + merchant_story()
    # A second user who draws and repays late twice: another band.
    story += [pt.payment("x1", "u-2", "shop", 1500.0, T0 + DAY, method="credit_line"),
              *(pt.repayment(f"x{d}", "u-2", 10.0, T0 + d * DAY, T0 + 2 * DAY) for d in (3, 4))]
    pipe.run(story, NOW, batch=3)
    book = pipe.proc.credit
    pricing = book.policy.pricing
    expected: dict[tuple[str, str], list[float]] = {}
    for user_id in ("u-ex", "u-2"):
        v = book.user_view(user_id)
        e = expected.setdefault(("user", pricing.band_label(pricing.band(v["pd"]))), [0, 0.0, 0.0])
        e[0] += 1
        e[1] += v["credit_outstanding"]
        e[2] += round(v["pd"] * pricing.lgd * v["credit_outstanding"] * 100) / 100
    v = book.merchant_view("m-ex", pipe.proc.merchants.get("m-ex"))
    expected[("merchant", pricing.band_label(pricing.band(v["pd"])))] = [
        1, v["credit_outstanding"], round(v["pd"] * pricing.lgd * v["credit_outstanding"] * 100) / 100]
    got = {(s, b): [n, exp, el] for s, b, n, exp, el in book.expected_loss()}
    assert got.keys() == expected.keys()
    for k, (n, exp, el) in expected.items():
        assert got[k][0] == n and got[k][1] == pytest.approx(exp) and got[k][2] == pytest.approx(el), k
    assert len({b for _, b in got}) >= 2
    book.forget()
    assert book.expected_loss() == []



def test_a_merchants_exposure_is_its_outstanding_advances_moved_at_each_advance_and_repayment() -> None:
    pipe = Pipeline()
    pipe.run(merchant_story(), NOW, batch=1)
    book = pipe.proc.credit

    def merchant_row() -> tuple[int, float, float]:
        (row,) = [r for r in book.expected_loss() if r[0] == "merchant"]
        return row[2], row[3], row[4]

    assert merchant_row()[1] == 0.0  # no advance drawn: nothing exposed
    line = book.merchant_view("m-ex", pipe.proc.merchants.get("m-ex"))["credit_line"]
    pipe.run([pt.advance("adv-1", "m-ex", line / 2, NOW - 1)], NOW, batch=1)
    v = book.merchant_view("m-ex", pipe.proc.merchants.get("m-ex"))
    n, exposure, loss = merchant_row()
    assert (n, exposure) == (1, pytest.approx(v["credit_outstanding"])) and v["credit_outstanding"] > 0
    assert loss == pytest.approx(v["pd"] * book.policy.pricing.lgd * exposure, abs=0.01)
