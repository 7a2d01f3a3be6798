"""The calibration plot of `streamrisk train`: mean score against the observed positive rate per score bin,
learned and hand-set, on the held-out payments."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")  # files only; never a window

import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from .pd import PdResult
    from .train import Result


def calibration_plot(result: Result, path: Path) -> Path:
    test = result.metrics["test"]
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1, label="perfectly calibrated")
    for name, style in (("learned", "o-"), ("handset", "s--")):
        bins = test[name]["calibration"]
        xs = [b["mean_score"] for b in bins]
        ys = [b["observed"] for b in bins]
        auc = test[name]["pr_auc"]
        label = f"{'learned' if name == 'learned' else 'hand-set'} (PR-AUC {auc:.3f})" if auc is not None \
            else name
        ax.plot(xs, ys, style, ms=4, lw=1.2, label=label)
        for x, y, b in zip(xs, ys, bins, strict=True):
            ax.annotate(str(b["payments"]), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean score in the bin",
           ylabel=f"share labelled {result.config.target} (stream labels)",
           title=f"Calibration on {test['payments']} held-out payments")
    return _save(fig, [ax], path)


def _save(fig: Any, axes: Any, path: Path) -> Path:
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def pd_calibration_plot(result: PdResult, path: Path) -> Path:
    """`streamrisk train --pd`: mean PD against the observed default rate per PD bin, fitted and
    hand-set, per segment fitted, on the held-out points."""
    segments = [s for s, m in result.metrics.items() if "test" in m]
    fig, axes = plt.subplots(1, max(1, len(segments)), figsize=(6 * max(1, len(segments)), 5), squeeze=False)
    for ax, segment in zip(axes[0], segments, strict=False):
        test = result.metrics[segment]["test"]
        ax.plot([0, 1], [0, 1], color="0.6", ls=":", lw=1, label="perfectly calibrated")
        for name, style in (("fitted", "o-"), ("handset", "s--")):
            bins = test[name]["calibration"]
            auc = test[name]["roc_auc"]
            label = ("fitted" if name == "fitted" else "hand-set") + (f" (ROC-AUC {auc:.3f})" if auc else "")
            ax.plot([b["mean_score"] for b in bins], [b["observed"] for b in bins], style, ms=4, lw=1.2,
                    label=label)
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean PD in the bin",
               ylabel="share defaulted within the horizon",
               title=f"{segment} PD on {test['points']} held-out points")
    return _save(fig, axes[0][: len(segments)], path)
