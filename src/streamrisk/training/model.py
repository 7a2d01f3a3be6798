"""L2-regularised logistic regression in numpy (Newton's method on standardised features, the scaling
folded back into the weights) and the metrics that compare two scores on the same payments."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fitted:
    """Weights on the raw features: score = sigmoid(bias + weights · x), nothing else to compute."""

    bias: float
    weights: np.ndarray
    iterations: int
    converged: bool

    def predict(self, x: np.ndarray) -> np.ndarray:
        return sigmoid(self.bias + x @ self.weights)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + e^-z), without overflow


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, *, max_iter: int = 50,
                 tol: float = 1e-8) -> Fitted:
    """Minimise the summed log loss + l2/2 · |w|² over standardised features (the bias is not
    penalised). A feature constant in `x` gets weight 0."""
    n, d = x.shape
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    live = std > 1e-12
    scale = np.where(live, std, 1.0)
    z = np.where(live, (x - mean) / scale, 0.0)
    a = np.hstack([np.ones((n, 1)), z])  # column 0: the bias
    penalty = np.full(d + 1, float(l2))
    penalty[0] = 0.0
    penalty[1:][~live] = 1e12  # pin constant features at 0
    p0 = min(max(float(y.mean()), 1e-6), 1 - 1e-6) if n else 0.5
    beta = np.zeros(d + 1)
    beta[0] = np.log(p0 / (1 - p0))
    ridge = penalty + 1e-9  # keeps the Hessian invertible where every p(1-p) underflows
    loss = _loss(a, y, beta, penalty)
    converged, steps = False, 0
    while steps < max_iter and not converged:
        steps += 1
        p = sigmoid(a @ beta)
        grad = a.T @ (p - y) + penalty * beta
        # einsum, not a.T @ a: a multithreaded BLAS took 10-20x longer for this product on a busy
        # 2-core machine (threads contending), einsum stays on one core.
        hess = np.einsum("ij,ik->jk", a * (p * (1 - p))[:, None], a) + np.diag(ridge)
        step = np.linalg.solve(hess, grad)
        # Damped: halve the step until the loss does not grow (Newton can overshoot far from the optimum).
        for _ in range(30):
            new = beta - step
            new_loss = _loss(a, y, new, penalty)
            if new_loss <= loss + 1e-12 * abs(loss):
                break
            step = step / 2
        beta, loss = new, new_loss
        converged = bool(np.max(np.abs(step)) < tol)
    # Fold the standardisation into the weights: w·(x - m)/s = (w/s)·x - Σ w·m/s.
    w_std = np.where(live, beta[1:], 0.0)
    weights = w_std / scale
    bias = float(beta[0] - np.sum(weights * mean))
    return Fitted(bias, weights, steps, converged)


def _loss(a: np.ndarray, y: np.ndarray, beta: np.ndarray, penalty: np.ndarray) -> float:
    z = a @ beta
    # log(1 + e^z) - y z, stably.
    return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * np.sum(penalty * beta * beta))


# -- metrics -------------------------------------------------------------------------------------------


def roc_auc(y: np.ndarray, s: np.ndarray) -> float | None:
    """Probability that a positive outscores a negative (ties count half); None without both."""
    pos, neg = int(y.sum()), int(len(y) - y.sum())
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def pr_auc(y: np.ndarray, s: np.ndarray) -> float | None:
    """Average precision: the mean, over positives, of the precision at their score (ties together)."""
    pos = int(y.sum())
    if pos == 0:
        return None
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    tp = np.cumsum(ys)
    seen = np.arange(1, len(ys) + 1)
    end = _run_ends(ss)  # tied scores are flagged together: the precision at the end of their run
    precision = tp[end] / seen[end]
    return float(np.sum(precision * ys) / pos)


def _run_ends(sorted_desc: np.ndarray) -> np.ndarray:
    """For each position of a descending array, the last index of its run of equal values."""
    n = len(sorted_desc)
    is_last = np.r_[sorted_desc[1:] != sorted_desc[:-1], True]
    idx = np.where(is_last, np.arange(n), n)
    return np.minimum.accumulate(idx[::-1])[::-1]


def at_threshold(y: np.ndarray, s: np.ndarray, threshold: float | None) -> dict[str, float | int | None]:
    """Payments at or above `threshold`, and their precision and recall."""
    if threshold is None:
        return {"threshold": None, "flagged": 0, "precision": None, "recall": None}
    flagged = s >= threshold
    n, tp, pos = int(flagged.sum()), int((flagged & (y == 1)).sum()), int(y.sum())
    return {"threshold": float(threshold), "flagged": n,
            "precision": tp / n if n else None, "recall": tp / pos if pos else None}


def threshold_for_precision(y: np.ndarray, s: np.ndarray, precision: float, min_flagged: int = 1
                            ) -> float | None:
    """The lowest score threshold whose flagged payments have at least `precision` (and at least
    `min_flagged` of them), None when no threshold reaches it."""
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    if not len(ss):
        return None
    end = _run_ends(ss)
    tp = np.cumsum(ys)[end]
    flagged = end + 1
    ok = (tp / flagged >= precision) & (flagged >= min_flagged)
    if not ok.any():
        return None
    return float(ss[np.nonzero(ok)[0].max()])


def calibration(y: np.ndarray, s: np.ndarray, bins: int = 10) -> list[dict[str, float | int]]:
    """Per bin of score (equal width on [0, 1]): payments, mean score, observed fraud rate."""
    out = []
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(s, edges[1:-1]), 0, bins - 1)
    for b in range(bins):
        m = which == b
        n = int(m.sum())
        if n:
            out.append({"low": float(edges[b]), "high": float(edges[b + 1]), "payments": n,
                        "mean_score": float(s[m].mean()), "observed": float(y[m].mean())})
    return out
