"""Training on an export: labels, the time-ordered split, the fit, thresholds chosen on the training part,
and learned against hand-set on the held-out part (score alone, and the whole verdict with the rules)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ..rules import Ruleset
from ..rules.ruleset import HIGH_SCORE
from ..rules.score import ScoreModel
from .export import Export
from .labels import DAY_MS, FRAUD_REASONS, analyst_labels, default_labels, fraud_labels, with_analyst_labels
from .model import (
    Fitted,
    at_threshold,
    calibration,
    fit_logistic,
    pr_auc,
    roc_auc,
    threshold_for_precision,
)

_ACTIONS = ("approve", "review", "decline")


class TrainError(ValueError):
    """Training that cannot be done on this recording; the message says why and what to change."""


@dataclass(frozen=True)
class TrainConfig:
    horizon_days: float = 30.0
    grace_days: float = 3.0
    target: str = "fraud"  # fraud | default | either
    label_scope: str = "device"  # payment | device
    split: float = 0.7
    mature_days: float = 0.0  # leave out the payments of the recording's last days (labels still to come)
    l2: float = 1.0
    decline_precision: float = 0.99
    review_precision: float = 0.8

    @classmethod
    def from_args(cls, args: Any) -> TrainConfig:
        return cls(**{f: getattr(args, f) for f in cls.__dataclass_fields__})


@dataclass
class Result:
    config: TrainConfig
    digest: str  # sha256 of the recording trained on
    current: Ruleset
    export: Export
    y: np.ndarray
    train_idx: np.ndarray
    test_idx: np.ndarray
    fitted: Fitted
    learned: np.ndarray  # the learned score of every payment
    review_at: float | None
    decline_at: float | None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return f"learned-{self.digest[:12]}"

    def score_section(self) -> dict[str, Any]:
        section: dict[str, Any] = {
            "bias": float(self.fitted.bias),
            "clip": float(self.export.clip),
            "weights": {k: float(w) for k, w in zip(self.export.features, self.fitted.weights, strict=True)},
        }
        if self.review_at is not None:
            section["review_at"] = self.review_at
        if self.decline_at is not None:
            section["decline_at"] = self.decline_at
        return section

    def ruleset_mapping(self) -> dict[str, Any]:
        """The current ruleset (rules, params) with the learned score, and what it was trained on."""
        out = self.current.to_mapping()
        out["version"] = self.version
        out["description"] = (f"{self.current.version} with a logistic score trained by `streamrisk "
                              f"train` on a recording (sha256 {self.digest[:12]}...)")
        out["score"] = self.score_section()
        meta = dict(out.get("meta") or {})
        meta["trained"] = {
            "at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "recording_sha256": self.digest,
            "base_ruleset": self.current.version,
            "config": dict(self.config.__dict__),
            "metrics": _without_calibration(self.metrics),
        }
        out["meta"] = meta
        return out

    def check_scores(self, ruleset: Ruleset) -> None:
        """The written ruleset scores held-out payments as trained (the loader's ScoreModel, the live
        path), or TrainError."""
        model = ruleset.score_model
        names = list(self.export.features)
        if [f.key for f in model.features] != names:
            raise TrainError("the written ruleset's features differ from the trained ones")
        x = self.export.matrix()
        for i in self.test_idx[:200]:
            live = model.score_of(list(x[i]))
            if not math.isclose(live, float(self.learned[i]), rel_tol=1e-9, abs_tol=1e-12):
                raise TrainError(f"payment {self.export.event_ids[i]}: the ruleset scores {live}, "
                                 f"training {self.learned[i]}")

    def learned_actions(self) -> list[str]:
        """The learned ruleset's verdict per payment: its rules (as the live ones fired) and its score."""
        model = ScoreModel(0.0, {}, self.review_at, self.decline_at)
        return [_ACTIONS[max(rank, model.action(float(s)))]
                for rank, s in zip(self.export.rule_rank, self.learned, strict=True)]

    def learned_reasons(self, i: int, action: str) -> list[str]:
        reasons = [r for r in self.export.reasons[i] if r != HIGH_SCORE]
        if _ACTIONS.index(action) > self.export.rule_rank[i]:
            reasons.append(HIGH_SCORE)
        return reasons

    def format(self, recording: Path) -> str:
        m = self.metrics
        e = self.export
        lines = [
            f"trained on {recording} (sha256 {self.digest[:12]}...): {len(e)} payments decided by "
            f"{e.version}; labels: {m['labels']['positives']} {self.config.target} "
            f"({m['labels']['fraud_chargebacks']} fraud chargebacks, {m['labels']['late_repayments']} late "
            f"repayments)",
            f"  split by time{_left_out(m['test']['left_out_recent'], self.config.mature_days)}: "
            f"{m['train']['payments']} earlier payments to train on "
            f"({m['train']['positives']} positive), {m['test']['payments']} later ones held out "
            f"({m['test']['positives']} positive)",
            f"  fit: {self.fitted.iterations} Newton steps (converged: {self.fitted.converged}), l2 "
            f"{self.config.l2}; thresholds from the training part: review_at {_fmt(self.review_at)}, "
            f"decline_at {_fmt(self.decline_at)}",
        ]
        if not m["test"]["positives"]:
            lines.append("  note: no held-out payment is labelled: chargebacks come days after their "
                         "payments, so a short recording ends before they do; record more days of traffic")
        lines.append("held-out part                           hand-set     learned")
        h, lrn = m["test"]["handset"], m["test"]["learned"]
        rows = [("ROC-AUC (score)", "roc_auc"), ("PR-AUC (score)", "pr_auc")]
        for label, key in rows:
            lines.append(f"  {label:<36} {_fmt(h[key]):>10}  {_fmt(lrn[key]):>10}")
        for level in ("decline", "review"):
            for what in ("precision", "recall", "flagged"):
                lines.append(f"  {f'score >= {level}_at: {what}':<36} {_fmt(h[level][what]):>10}  "
                             f"{_fmt(lrn[level][what]):>10}")
        for level in ("decline", "review or decline"):
            for what in ("precision", "recall", "flagged"):
                a, b = h["verdict"][level][what], lrn["verdict"][level][what]
                lines.append(f"  {f'verdict {level}: {what}':<36} {_fmt(a):>10}  {_fmt(b):>10}")
        per = m.get("per_scenario")
        if per:
            lines.append("quality per scenario on the held-out part (the generator's labels; not trained on)")
            lines.append(f"  {'':<18} {'':>8} {'':>6}  {'decline recall':>15}  {'decline precision':>17}  "
                         f"{'flag recall':>15}  {'declined':>13}  {'reviewed':>13}")
            lines.append(f"  {'scenario':<18} {'payments':>8} {'fraud':>6}" + "  hand-set learned" * 5)
            for name, row in per.items():
                a, b = row["handset"], row["learned"]
                rates = ("decline_recall", "decline_precision", "flag_recall")
                cells = [(_pct(a[k]), _pct(b[k])) for k in rates]
                cells += [(str(a[k]), str(b[k])) for k in ("decline", "review")]
                lines.append(f"  {name:<18} {a['payments']:>8} {a['fraud_payments']:>6}"
                             + "".join(f"  {x:>8} {y:>7}" for x, y in cells))
            normal = per.get("normal")
            if normal:
                a, b = normal["handset"], normal["learned"]
                lines.append(f"  good payments declined or reviewed: hand-set {_pct(a['normal_flag_rate'])}, "
                             f"learned {_pct(b['normal_flag_rate'])}")
        return "\n".join(lines)


def _left_out(n: int, days: float) -> str:
    return f" (the last {days:g} days' {n} payments left out)" if days > 0 else ""


def _without_calibration(m: Any) -> Any:
    if isinstance(m, dict):
        return {k: _without_calibration(v) for k, v in m.items() if k != "calibration"}
    return m


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if v < 1 or v == 1.0 else f"{v:.1f}"
    return str(v)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def labels_for(export: Export, config: TrainConfig) -> tuple[np.ndarray, dict[str, int]]:
    horizon = int(config.horizon_days * DAY_MS)
    fraud = with_analyst_labels(export, fraud_labels(export, horizon, config.label_scope), horizon)
    default = default_labels(export, horizon, int(config.grace_days * DAY_MS))
    y = {"fraud": fraud, "default": default, "either": np.maximum(fraud, default)}[config.target]
    counts = {
        "positives": int(y.sum()), "fraud_payments": int(fraud.sum()), "default_payments": int(default.sum()),
        "fraud_chargebacks": sum(cb.reason in FRAUD_REASONS for cb in export.chargebacks),
        "late_repayments": sum(r.ts > r.due_ts + config.grace_days * DAY_MS for r in export.repayments),
    }
    if export.resolutions:
        analyst_fraud, analyst_good = analyst_labels(export)
        counts["analyst_fraud"] = int(analyst_fraud.sum())
        counts["analyst_approve"] = int(analyst_good.sum())
    return y, counts


def _verdict_metrics(y: np.ndarray, actions: list[str], idx: np.ndarray) -> dict[str, Any]:
    out = {}
    for level, flagged_by in (("decline", {"decline"}), ("review or decline", {"review", "decline"})):
        s = np.array([1.0 if actions[i] in flagged_by else 0.0 for i in idx])
        out[level] = at_threshold(y[idx], s, 0.5)
        out[level].pop("threshold")
    return out


def _score_metrics(y: np.ndarray, s: np.ndarray, review_at: float | None, decline_at: float | None
                   ) -> dict[str, Any]:
    return {"roc_auc": roc_auc(y, s), "pr_auc": pr_auc(y, s),
            "review": at_threshold(y, s, review_at), "decline": at_threshold(y, s, decline_at),
            "calibration": calibration(y, s)}


def train(export: Export, current: Ruleset, config: TrainConfig, digest: str) -> Result:
    """Label, split by payment time, fit, choose thresholds on the training part, measure on the rest."""
    y, counts = labels_for(export, config)
    ts = np.array(export.ts, dtype=np.int64)
    order = np.argsort(ts, kind="stable")
    if config.mature_days > 0 and len(ts):
        # Payments too recent for their chargebacks to have come: neither trained on nor measured.
        order = order[ts[order] <= ts.max() - int(config.mature_days * DAY_MS)]
    n = len(order)
    cut = round(n * config.split)
    train_idx, test_idx = order[:cut], order[cut:]
    if n < 20 or not len(test_idx):
        raise TrainError(f"{n} payments decided: too few to train on and hold some out")
    y_train = y[train_idx]
    if y_train.sum() < 2 or y_train.sum() == len(y_train):
        raise TrainError(f"the training part holds {int(y_train.sum())} positive payments of {len(y_train)}: "
                         "nothing to learn (a longer recording, a longer --horizon-days or a larger --split)")
    x = export.matrix()
    fitted = fit_logistic(x[train_idx], y_train, config.l2)
    # The score exactly as the ruleset will compute it live (rules/score.py), for every payment.
    model = ScoreModel(fitted.bias, dict(zip(export.features, map(float, fitted.weights), strict=True)),
                       None, None, export.clip)
    learned = np.array([model.score_of(list(row)) for row in x])
    s_train = learned[train_idx]
    decline_at = threshold_for_precision(y_train, s_train, config.decline_precision, min_flagged=3)
    review_at = threshold_for_precision(y_train, s_train, config.review_precision, min_flagged=3)
    if review_at is not None and decline_at is not None:
        review_at = min(review_at, decline_at)
    result = Result(config, digest, current, export, y, train_idx, test_idx, fitted, learned,
                    review_at, decline_at)
    handset = np.array(export.handset_score)
    hm = current.score_model
    live_actions = export.live_action
    learned_actions = result.learned_actions()
    result.metrics = {
        "labels": counts,
        "features": list(export.features),
        "train": {"payments": len(train_idx), "positives": int(y_train.sum()),
                  "learned": {k: v for k, v in _score_metrics(y_train, s_train, review_at, decline_at).items()
                              if k != "calibration"}},
        "test": {
            "payments": len(test_idx), "positives": int(y[test_idx].sum()),
            "from_ts": int(export.ts[test_idx[0]]) if len(test_idx) else None,
            "left_out_recent": len(export) - n,
            "handset": {**_score_metrics(y[test_idx], handset[test_idx], hm.review_at, hm.decline_at),
                        "verdict": _verdict_metrics(y, live_actions, test_idx)},
            "learned": {**_score_metrics(y[test_idx], learned[test_idx], review_at, decline_at),
                        "verdict": _verdict_metrics(y, learned_actions, test_idx)},
        },
    }
    return result


def scenario_quality(labels_path: Path, export: Export, result: Result) -> dict[str, dict[str, Any]]:
    """Decision quality per scenario of the held-out payments, hand-set against learned verdicts, from
    the load generator's labels: reporting only, they never reach training."""
    from ..loadgen.labels import Label
    from ..loadgen.quality import decision_quality

    held = {export.event_ids[i] for i in result.test_idx}
    labels = []
    with labels_path.open("rb") as fh:
        for line in fh:
            if line.strip():
                d = orjson.loads(line)
                if d.get("event_id") in held:
                    labels.append(Label(**d))
    learned_actions = result.learned_actions()
    handset, learned = {}, {}
    for i in result.test_idx:
        eid = export.event_ids[i]
        handset[eid] = {"action": export.live_action[i], "reasons": list(export.reasons[i])}
        action = learned_actions[i]
        learned[eid] = {"action": action, "reasons": result.learned_reasons(i, action)}
    a, b = decision_quality(labels, handset), decision_quality(labels, learned)
    names = sorted(a, key=lambda k: (k == "all", k))
    return {name: {"handset": a[name], "learned": b[name]} for name in names}

