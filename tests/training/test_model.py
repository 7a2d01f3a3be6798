"""The logistic regression and the metrics, on data whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from streamrisk.training.model import (
    at_threshold,
    calibration,
    fit_logistic,
    pr_auc,
    roc_auc,
    threshold_for_precision,
)


def test_separable_data_is_ranked_perfectly_with_the_signs_that_separate_it() -> None:
    rng = np.random.default_rng(3)
    n = 2000
    x = np.column_stack([rng.normal(0, 1, n), rng.normal(50, 20, n), rng.normal(0, 1, n), np.full(n, 7.0)])
    margin = 2.0 * x[:, 0] - 0.1 * (x[:, 1] - 50.0) - 1.5  # x2 is noise, x3 constant
    x = x[np.abs(margin) > 0.5]  # separable with a margin
    y = (margin[np.abs(margin) > 0.5] > 0).astype(float)
    fitted = fit_logistic(x, y, l2=0.01)
    assert fitted.converged
    p = fitted.predict(x)
    assert roc_auc(y, fitted.bias + x @ fitted.weights) == 1.0  # on the logit: p saturates to 0 and 1
    assert ((p >= 0.5) == (y == 1)).mean() > 0.99
    w = fitted.weights
    assert w[0] > 0 and w[1] < 0 and w[3] == 0.0
    assert abs(w[2]) < 0.2 * abs(w[0])
    # The weights are on the raw features (the standardisation folded in): sigmoid(b + w·x) as is.
    assert np.allclose(p, 1 / (1 + np.exp(-(fitted.bias + x @ w))))


def test_a_stronger_penalty_shrinks_the_weights() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (500, 3))
    y = (x[:, 0] + rng.normal(0, 1, 500) > 0).astype(float)
    weak, strong = fit_logistic(x, y, l2=0.1), fit_logistic(x, y, l2=500.0)
    assert np.linalg.norm(strong.weights) < 0.5 * np.linalg.norm(weak.weights)


def test_roc_and_pr_auc_on_a_small_case() -> None:
    y = np.array([1, 0, 1, 0, 0], dtype=float)
    s = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    assert roc_auc(y, s) == pytest.approx(5 / 6)  # one of six pairs in the wrong order
    assert pr_auc(y, s) == pytest.approx((1 / 1 + 2 / 3) / 2)
    tied = np.array([0.5] * 5)
    assert roc_auc(y, tied) == 0.5 and pr_auc(y, tied) == pytest.approx(0.4)
    assert roc_auc(np.zeros(3), np.ones(3)) is None and pr_auc(np.zeros(3), np.ones(3)) is None


def test_threshold_for_precision_is_the_lowest_that_keeps_it() -> None:
    y = np.array([1, 1, 0, 1, 0, 0], dtype=float)
    s = np.array([0.95, 0.9, 0.8, 0.7, 0.3, 0.1])
    assert threshold_for_precision(y, s, 1.0) == 0.9
    assert threshold_for_precision(y, s, 0.75) == 0.7
    assert threshold_for_precision(y, s, 1.0, min_flagged=3) is None
    assert at_threshold(y, s, 0.7) == {"threshold": 0.7, "flagged": 4, "precision": 0.75, "recall": 1.0}
    bins = calibration(y, s, bins=2)
    assert [(b["payments"], b["observed"]) for b in bins] == [(2, 0.0), (4, 0.75)]
