"""`streamrisk train --pd`: the pricing model's PD weights (credit/pricing.py) fitted from a recording.

The recording is replayed through the backtest's path (the worker's core, credit included), and each
credit account's PD features are taken at each point a PD is priced for: a user account opened,
reviewed or adjusted, a merchant line adjusted (the book's `pd_watch`, called with the account as it
stands at that event, before any later record is applied: nothing after the point is seen).

A point is labelled a default when, within the horizon after it, the account:
- had a repayment fall more than the grace period past its due date (the default is dated at due +
  grace: it happened then, whenever the late repayment came), or
- (users) had a `credit_line` payment of theirs charged back for fraud (`fraud`/`unauthorized`): a
  drawn amount nobody repays (dated at the chargeback).

Points are split by time (the earlier part fits, the later part is held out), an L2 logistic regression
is fitted per segment with the weight signs the policy requires (a feature whose fitted weight has the
forbidden sign is left out and the rest refitted, so more of a bad signal never lowers a PD), and the
fitted and hand-set PDs are compared on the held-out points: ROC-AUC, log loss, Brier score and a
calibration table. The result is the base policy with its `pricing:` weights replaced.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import orjson

from ..backtest.offline import run_backtest
from ..credit.policy import CreditPolicy
from ..credit.pricing import MERCHANT_FEATURES, USER_FEATURES, Model
from ..recording.jsonl import Recorded
from ..rules import Ruleset
from ..settings import DAY_MS, Settings
from .labels import FRAUD_REASONS
from .model import calibration, fit_logistic, roc_auc
from .train import TrainError

SEGMENTS: Final = {"user": USER_FEATURES, "merchant": MERCHANT_FEATURES}
#: Bounds the policy loader puts on a model (policy.py `_model`).
_INTERCEPT_MAX: Final = 50.0
_WEIGHT_MAX: Final = 1000.0


@dataclass
class PdExport:
    """The points of each segment, in the order they were priced, and the stream's default events."""

    ids: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in SEGMENTS})
    ts: dict[str, list[int]] = field(default_factory=lambda: {k: [] for k in SEGMENTS})
    kinds: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in SEGMENTS})  # open|review|...
    rows: dict[str, list[list[float]]] = field(default_factory=lambda: {k: [] for k in SEGMENTS})
    # (segment, account id) -> [(repayment ts, due ts)] of its repayments; credit payments by id.
    repayments: dict[tuple[str, str], list[tuple[int, int]]] = field(
        default_factory=lambda: defaultdict(list))
    credit_payments: dict[str, str] = field(default_factory=dict)  # credit_line payment id -> user id
    fraud_chargebacks: list[tuple[str, int]] = field(default_factory=list)  # (payment id, ts)
    end_ts: int = 0

    def watch(self, segment: str, account: str, ts: int, kind: str, features: dict[str, float]) -> None:
        self.ids[segment].append(account)
        self.ts[segment].append(ts)
        self.kinds[segment].append(kind)
        self.rows[segment].append([float(features[f]) for f in SEGMENTS[segment]])

    def matrix(self, segment: str) -> np.ndarray:
        return np.array(self.rows[segment], dtype=np.float64).reshape(-1, len(SEGMENTS[segment]))

    def defaults(self, grace_ms: int) -> dict[tuple[str, str], list[int]]:
        """(segment, account) -> sorted times its defaults happened (module docstring)."""
        out: dict[tuple[str, str], list[int]] = defaultdict(list)
        for key, reps in self.repayments.items():
            out[key] += [due + grace_ms for ts, due in reps if ts > due + grace_ms]
        for pid, ts in self.fraud_chargebacks:
            user = self.credit_payments.get(pid)
            if user is not None:
                out["user", user].append(ts)
        for times in out.values():
            times.sort()
        return out


def _observe(records: Iterable[Recorded], export: PdExport) -> Iterable[Recorded]:
    """Pass the records on, keeping what labels a point (invalid records label nothing: the processor
    dead-letters them)."""
    for rec in records:
        if rec.topic in ("payments", "chargebacks", "repayments") and rec.value:
            try:
                v = orjson.loads(rec.value)
            except orjson.JSONDecodeError:
                v = None
            if isinstance(v, dict) and type(v.get("ts")) is int:
                export.end_ts = max(export.end_ts, v["ts"])
                if rec.topic == "payments":
                    if v.get("method") == "credit_line" and isinstance(v.get("event_id"), str) \
                            and isinstance(v.get("user_id"), str):
                        export.credit_payments.setdefault(v["event_id"], v["user_id"])
                elif rec.topic == "chargebacks":
                    if v.get("reason") in FRAUD_REASONS and isinstance(v.get("payment_id"), str):
                        export.fraud_chargebacks.append((v["payment_id"], v["ts"]))
                elif (v.get("account_type") in SEGMENTS and isinstance(v.get("account_id"), str)
                      and type(v.get("due_ts")) is int):
                    export.repayments[v["account_type"], v["account_id"]].append((v["ts"], v["due_ts"]))
        yield rec


def export_pd_points(records: Iterable[Recorded], settings: Settings, ruleset: Ruleset,
                     *, batch_max: int = 500) -> PdExport:
    """Replay `records` as `streamrisk backtest` does, with the credit policy of `settings`; every
    account's PD features at every point it is priced for."""
    if not settings.credit_enabled:
        raise TrainError("--pd needs credit on (STREAMRISK_CREDIT=on): the PD is a credit account's")
    export = PdExport()

    def configure(processor: Any, _candidate: bool) -> None:
        processor.credit.pd_watch = export.watch

    run_backtest(_observe(records, export), settings, ruleset, None, configure=configure,
                 batch_max=batch_max)
    return export


def pd_labels(export: PdExport, segment: str, horizon_ms: int, grace_ms: int) -> np.ndarray:
    """1.0 for each point of `segment` whose account defaults after it, within `horizon_ms`."""
    defaults = export.defaults(grace_ms)
    y = np.zeros(len(export.ids[segment]))
    for i, (account, ts) in enumerate(zip(export.ids[segment], export.ts[segment], strict=True)):
        times = defaults.get((segment, account))
        if times:
            j = bisect.bisect_right(times, ts)  # strictly after the point
            y[i] = float(j < len(times) and times[j] <= ts + horizon_ms)
    return y


@dataclass
class SignedFit:
    intercept: float
    weights: dict[str, float]  # every feature of the segment; 0 for one left out
    left_out: list[str]  # features whose fitted weight had the forbidden sign
    converged: bool


def fit_signed(x: np.ndarray, y: np.ndarray, names: dict[str, int], l2: float) -> SignedFit:
    """L2 logistic regression whose weights keep the signs `names` requires (+1 or -1): a feature
    fitted with the other sign is dropped and the rest refitted, until every sign is allowed."""
    keep = list(range(len(names)))
    signs = list(names.values())
    left_out: list[str] = []
    while True:
        fitted = fit_logistic(x[:, keep], y, l2)
        wrong = [k for k, w in zip(keep, fitted.weights, strict=True) if w * signs[k] < 0]
        if not wrong:
            break
        worst = min(wrong, key=lambda k: fitted.weights[keep.index(k)] * signs[k])
        keep.remove(worst)
        left_out.append(list(names)[worst])
    weights = dict.fromkeys(names, 0.0)
    for k, w in zip(keep, fitted.weights, strict=True):
        weights[list(names)[k]] = float(np.clip(w, -_WEIGHT_MAX, _WEIGHT_MAX))
    intercept = float(np.clip(fitted.bias, -_INTERCEPT_MAX, _INTERCEPT_MAX))
    return SignedFit(intercept, weights, left_out, fitted.converged)


def model_pd(model: Model, x: np.ndarray, names: Iterable[str]) -> np.ndarray:
    """The policy model's PD of each row, exactly as the book prices it (Model.pd)."""
    names = list(names)
    return np.array([model.pd(dict(zip(names, row, strict=True))) for row in x])


def _quality(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    eps = 1e-6
    q = np.clip(p, eps, 1 - eps)
    return {"roc_auc": roc_auc(y, p),
            "log_loss": float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q))) if len(y) else None,
            "brier": float(np.mean((p - y) ** 2)) if len(y) else None,
            "mean_pd": float(p.mean()) if len(p) else None, "observed": float(y.mean()) if len(y) else None,
            "calibration": calibration(y, p)}


@dataclass
class PdResult:
    config: dict[str, Any]
    digest: str
    base: CreditPolicy
    fits: dict[str, SignedFit | None]  # None: the hand-set model kept (why in notes)
    metrics: dict[str, Any]
    notes: dict[str, str]

    def pricing_section(self, base_raw: dict[str, Any]) -> dict[str, Any]:
        """The base policy file's `pricing:` with the fitted weights (bands and LGD kept)."""
        section = dict(base_raw)
        for segment, fit in self.fits.items():
            if fit is not None:
                section[segment] = {"intercept": round(fit.intercept, 6),
                                    "weights": {k: round(w, 6) for k, w in fit.weights.items()}}
        section["horizon_days"] = max(1, round(self.config["horizon_days"]))
        fitted = [s for s, f in self.fits.items() if f is not None]
        section["fitted"] = (f"streamrisk train --pd: {' and '.join(fitted) or 'no'} weights fitted on a "
                             f"recording (sha256 {self.digest[:12]}...), horizon "
                             f"{self.config['horizon_days']:g} days, grace {self.config['grace_days']:g} "
                             "days")
        return section

    def format(self) -> str:
        lines = []
        for segment in SEGMENTS:
            m = self.metrics[segment]
            lines.append(f"{segment} accounts: {m['points']} points ({m['accounts']} accounts), "
                         f"{m['positives']} followed by a default within the horizon")
            if segment in self.notes:
                lines.append(f"  {self.notes[segment]}")
            if "test" not in m:
                continue
            fit = self.fits[segment]
            lines.append(f"  split by time: {m['train']['points']} earlier points fit "
                         f"({m['train']['positives']} positive), {m['test']['points']} later ones held out "
                         f"({m['test']['positives']} positive)")
            names = list(SEGMENTS[segment])
            base = self.base.pricing.user if segment == "user" else self.base.pricing.merchant
            hand = dict(base.weights)
            lines.append(f"  {'weight':<22}{'hand-set':>12}{'fitted':>12}")
            lines.append(f"  {'intercept':<22}{base.intercept:>12.4f}"
                         f"{(fit.intercept if fit else base.intercept):>12.4f}")
            for name in names:
                w = fit.weights[name] if fit else hand.get(name, 0.0)
                lines.append(f"  {name:<22}{hand.get(name, 0.0):>12.4f}{w:>12.4f}")
            if fit is not None and fit.left_out:
                lines.append("  left out (fitted with the sign the policy forbids): "
                             + ", ".join(fit.left_out))
            lines.append(f"  {'held-out part':<22}{'hand-set':>12}{'fitted':>12}")
            h, f = m["test"]["handset"], m["test"]["fitted"]
            for key in ("roc_auc", "log_loss", "brier", "mean_pd", "observed"):
                lines.append(f"  {key:<22}{_fmt(h[key]):>12}{_fmt(f[key]):>12}")
            lines.append("  calibration (held out): PD bin, points, mean PD hand-set / fitted, observed")
            for row in _joined_calibration(h["calibration"], f["calibration"]):
                lines.append(f"    {row}")
        return "\n".join(lines)


def _joined_calibration(h: list[dict], f: list[dict]) -> list[str]:
    out = []
    for name, rows in (("hand-set", h), ("fitted", f)):
        for r in rows:
            out.append(f"{name:<9} {r['low']:.1f}-{r['high']:.1f}  {r['payments']:>6}  mean PD "
                       f"{r['mean_score']:.4f}  observed {r['observed']:.4f}")
    return out


def _fmt(v: object) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def train_pd(export: PdExport, base: CreditPolicy, digest: str, *, horizon_days: float, grace_days: float,
             split: float, mature_days: float, l2: float) -> PdResult:
    """Label, split each segment's points by time, fit with the policy's signs, compare on the rest."""
    horizon, grace = int(horizon_days * DAY_MS), int(grace_days * DAY_MS)
    config = {"horizon_days": horizon_days, "grace_days": grace_days, "split": split,
              "mature_days": mature_days, "l2": l2}
    fits: dict[str, SignedFit | None] = {}
    metrics: dict[str, Any] = {}
    notes: dict[str, str] = {}
    for segment, names in SEGMENTS.items():
        y = pd_labels(export, segment, horizon, grace)
        ts = np.array(export.ts[segment], dtype=np.int64)
        metrics[segment] = {"points": len(y), "accounts": len(set(export.ids[segment])),
                            "positives": int(y.sum())}
        fits[segment] = None
        order = np.argsort(ts, kind="stable")
        if mature_days > 0 and len(ts):
            # Points too recent for a default within the horizon to have shown: neither fitted nor measured.
            order = order[ts[order] <= export.end_ts - int(mature_days * DAY_MS)]
        cut = round(len(order) * split)
        train_idx, test_idx = order[:cut], order[cut:]
        y_train = y[train_idx]
        if len(train_idx) < 20 or not len(test_idx) or y_train.sum() < 2 or y_train.sum() == len(y_train):
            notes[segment] = (f"hand-set weights kept: {int(y_train.sum())} of {len(train_idx)} earlier "
                              "points are followed by a default, too few to fit on (a longer recording)")
            continue
        x = export.matrix(segment)
        fit = fit_signed(x[train_idx], y_train, names, l2)
        fits[segment] = fit
        model = Model(fit.intercept, tuple(fit.weights.items()))
        hand = base.pricing.user if segment == "user" else base.pricing.merchant
        xt, yt = x[test_idx], y[test_idx]
        metrics[segment]["train"] = {"points": len(train_idx), "positives": int(y_train.sum())}
        metrics[segment]["test"] = {"points": len(test_idx), "positives": int(yt.sum()),
                                    "handset": _quality(yt, model_pd(hand, xt, names)),
                                    "fitted": _quality(yt, model_pd(model, xt, names))}
        metrics[segment]["fit"] = {"intercept": fit.intercept, "weights": fit.weights,
                                   "left_out": fit.left_out, "converged": fit.converged}
    return PdResult(config, digest, base, fits, metrics, notes)


def check_pd(result: PdResult, loaded: CreditPolicy, export: PdExport) -> None:
    """The written policy prices the points as fitted (the loader's Model, the book's path)."""
    for segment, fit in result.fits.items():
        if fit is None:
            continue
        model = loaded.pricing.user if segment == "user" else loaded.pricing.merchant
        expect = Model(fit.intercept, tuple(fit.weights.items()))
        names = list(SEGMENTS[segment])
        for row in export.rows[segment][:200]:
            features = dict(zip(names, row, strict=True))
            a, b = model.pd(features), expect.pd(features)
            if not math.isclose(a, b, abs_tol=2e-4):
                raise TrainError(f"the written policy prices a {segment} point at {a}, training at {b}")
