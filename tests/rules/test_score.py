"""The logistic score: feature vector, transforms, clipping, missing values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rules_helpers import normal_ctx, ruleset_mapping

from streamrisk.rules import ScoreModel, load_ruleset


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def model(weights: dict, bias: float = -1.0, clip: float = 20.0) -> ScoreModel:
    return ScoreModel.from_mapping({"bias": bias, "weights": weights, "clip": clip,
                                    "review_at": 0.6, "decline_at": 0.9})


def test_score_is_sigmoid_of_bias_plus_weighted_features() -> None:
    m = model({"user.payment_count_5m": 0.5, "user.new_device": 2.0})
    ctx = normal_ctx(user={"payment_count_5m": 4, "new_device": 1})
    assert m.score(ctx) == pytest.approx(sigmoid(-1.0 + 0.5 * 4 + 2.0 * 1))


def test_missing_or_non_numeric_feature_counts_as_zero() -> None:
    m = model({"user.payment_count_5m": 0.5, "merchant.refund_rate_24h": 3.0})
    ctx = normal_ctx(user={"payment_count_5m": 4})
    del ctx["merchant"]
    assert m.score(ctx) == pytest.approx(sigmoid(-1.0 + 2.0))
    ctx["user"]["payment_count_5m"] = "lots"
    assert m.score(ctx) == pytest.approx(sigmoid(-1.0))
    ctx["user"]["payment_count_5m"] = math.nan
    assert m.score(ctx) == pytest.approx(sigmoid(-1.0))


def test_log1p_transform_is_sign_preserving() -> None:
    m = model({"log1p(payment.amount)": 1.0, "log1p(user.amount_zscore_30d)": 1.0})
    x = m.vector(normal_ctx(payment={"amount": 99.0}, user={"amount_zscore_30d": -3.0}))
    assert x.tolist() == pytest.approx([math.log1p(99.0), -math.log1p(3.0)])


def test_equality_feature_is_a_one_hot_indicator() -> None:
    m = model({"payment.method == 'credit_line'": 1.0})
    assert m.vector(normal_ctx(payment={"method": "credit_line"})).tolist() == [1.0]
    assert m.vector(normal_ctx(payment={"method": "card"})).tolist() == [0.0]


def test_clip_bounds_every_feature() -> None:
    m = model({"user.amount_zscore_30d": 1.0}, clip=5.0)
    assert m.vector(normal_ctx(user={"amount_zscore_30d": 1e9})).tolist() == [5.0]
    assert m.vector(normal_ctx(user={"amount_zscore_30d": -math.inf})).tolist() == [-5.0]


def test_weights_are_vectorised_once_in_key_order() -> None:
    m = model({"user.new_device": 1.5, "payment.amount": -0.25})
    assert [f.key for f in m.features] == ["user.new_device", "payment.amount"]
    assert isinstance(m._w, np.ndarray)
    assert m._w.tolist() == [1.5, -0.25]


def test_thresholds_map_score_to_action() -> None:
    m = model({})
    assert [m.action(s) for s in (0.0, 0.59, 0.6, 0.89, 0.9, 1.0)] == [0, 0, 1, 1, 2, 2]


def test_ruleset_exposes_the_score_from_its_config() -> None:
    rs = load_ruleset(ruleset_mapping(score={"bias": 0.0, "weights": {}}))
    assert rs.score(normal_ctx()) == 0.5


@given(
    bias=st.floats(-1e6, 1e6),
    weight=st.floats(-1e6, 1e6),
    value=st.one_of(st.floats(allow_nan=True), st.integers(), st.none(), st.text(max_size=3)),
)
def test_score_is_always_within_zero_and_one(bias: float, weight: float, value: object) -> None:
    m = model({"user.payment_count_5m": weight, "log1p(payment.amount)": weight}, bias=bias)
    s = m.score(normal_ctx(user={"payment_count_5m": value}, payment={"amount": value}))
    assert 0.0 <= s <= 1.0


def reference_values(m: ScoreModel, ctx: dict) -> list[float]:
    """The feature vector as docs/rules.md defines it, one feature at a time."""
    out = []
    for f in m.features:
        src = ctx.get(f.namespace)
        v = src.get(f.field) if src is not None else None
        if f.transform == "eq":
            out.append(1.0 if v == f.equals else 0.0)
            continue
        try:
            x = float(v)
        except (TypeError, ValueError):
            x = 0.0
        if math.isnan(x):
            x = 0.0
        elif f.transform == "log1p":
            x = math.copysign(math.log1p(abs(x)), x)
        out.append(min(m.clip, max(-m.clip, x)))
    return out


hostile = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70),
                    st.none(), st.booleans(), st.text(max_size=4), st.sampled_from(["3.5", "nan", "-inf"]))


@given(st.dictionaries(st.sampled_from(["payment_count_5m", "amount_zscore_30d", "new_device"]), hostile),
       st.dictionaries(st.sampled_from(["amount", "method"]), hostile | st.sampled_from(["credit_line"])),
       st.booleans(), st.floats(0.5, 50.0))
def test_the_feature_vector_is_each_feature_transformed_and_clipped(user, payment, merchant, clip) -> None:
    m = model({"user.payment_count_5m": 0.3, "log1p(user.payment_count_5m)": 0.3,
               "log1p(user.amount_zscore_30d)": 1.0, "user.new_device": 0.8, "payment.amount": 0.1,
               "payment.method == 'credit_line'": 0.2, "merchant.refund_rate_24h": 1.5}, clip=clip)
    ctx = {"user": user, "payment": payment, **({"merchant": {}} if merchant else {})}
    got, want = m.values(ctx), reference_values(m, ctx)
    assert [repr(x) for x in got] == [repr(x) for x in want]  # bit for bit, -0.0 included
    assert all(type(x) is float for x in got)
