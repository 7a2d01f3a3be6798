"""`streamrisk train --pd`: each credit account's PD features at each point it is priced for are what the
account held then (nothing recorded after the point is seen), labels look only after the point, the
fit keeps the policy's weight signs, and the policy written loads and prices as fitted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
import yaml

from streamrisk.cli import main
from streamrisk.credit import default_policy, load_policy
from streamrisk.credit.pricing import USER_FEATURES
from streamrisk.loadgen import patterns
from streamrisk.loadgen.patterns import DAY
from streamrisk.loadgen.scenarios import ScenarioTraffic
from streamrisk.loadgen.synthetic import Record
from streamrisk.recording.jsonl import Recorded
from streamrisk.rules import default_ruleset
from streamrisk.settings import Settings
from streamrisk.training.pd import PdExport, export_pd_points, fit_signed, pd_labels

NOW = 1_700_000_000_000
USER = list(USER_FEATURES)


def _recorded(recs: list) -> list[Recorded]:
    recs = sorted(recs, key=lambda r: r[2]["ts"])
    return [Recorded(t, k, orjson.dumps(v), v["ts"] + 5) for t, k, v in recs]


def recording() -> list[Recorded]:
    """Ten weeks of a user spending on credit and repaying two days late (cut at each late repayment,
    reviewed weekly), then a fraud chargeback on one of their credit payments, and a second user who
    repays on time."""
    recs = patterns.late_repayer("bad", NOW) + patterns.on_time_repayer("good", NOW)
    recs.append(patterns.chargeback("bad:cb", "bad:latep9-1", "bad", "shop-1", 120.0, NOW - DAY))
    return _recorded(recs)


def _points(e: PdExport, user: str) -> list[tuple[int, str, tuple[float, ...]]]:
    return [(ts, kind, tuple(row)) for a, ts, kind, row in
            zip(e.ids["user"], e.ts["user"], e.kinds["user"], e.rows["user"], strict=True) if a == user]


def test_a_points_features_equal_those_from_the_recording_cut_right_after_its_event() -> None:
    full = recording()
    whole = export_pd_points(full, Settings(), default_ruleset())
    points = _points(whole, "bad")
    kinds = {k for _, k, _ in points}
    assert {"open", "review", "adjustment"} <= kinds, kinds
    # Every point, from the recording cut right after the record it was priced at: the same features.
    for ts, kind, row in points:
        cut = max(i for i, r in enumerate(full) if orjson.loads(r.value)["ts"] <= ts)
        alone = export_pd_points(full[:cut + 1], Settings(), default_ruleset())
        assert (ts, kind, row) in _points(alone, "bad"), (ts, kind)


def test_a_late_repayment_counts_only_at_and_after_it_and_labels_only_points_before_it() -> None:
    e = export_pd_points(recording(), Settings(), default_ruleset())
    first_late = min(r[0] for r in e.repayments["user", "bad"] if r[0] > r[1])
    for ts, _, row in _points(e, "bad"):
        bad_signals = dict(zip(USER, row, strict=True))["bad_signals"]
        if ts < first_late:
            assert bad_signals == 0.0  # the late repayment that came later is not seen
    y = pd_labels(e, "user", horizon_ms=7 * DAY, grace_ms=DAY)
    due = {d + DAY for r, d in e.repayments["user", "bad"] if r > d + DAY}
    for i, (account, ts) in enumerate(zip(e.ids["user"], e.ts["user"], strict=True)):
        if account == "good":
            assert y[i] == 0.0  # on time: never a default
            continue
        # Positive exactly when a default (due + grace of a repayment later than that, or the fraud
        # chargeback) happens strictly after the point and within 7 days of it.
        events = sorted(due | {NOW - DAY})
        expect = any(ts < t <= ts + 7 * DAY for t in events)
        assert y[i] == float(expect), (ts, y[i])
    # A grace longer than the lateness (two days) leaves only the chargeback as a default.
    y3 = pd_labels(e, "user", horizon_ms=7 * DAY, grace_ms=3 * DAY)
    bad = np.array([a == "bad" for a in e.ids["user"]])
    ts = np.array(e.ts["user"])
    assert set(np.nonzero(y3)[0]) == set(np.nonzero(bad & (ts < NOW - DAY) & (ts >= NOW - 8 * DAY))[0])


def test_a_weight_fitted_with_a_forbidden_sign_is_left_out_and_the_rest_refitted() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    x = np.column_stack([rng.uniform(0, 2, n), rng.integers(0, 5, n), rng.integers(0, 3, n),
                         rng.integers(0, 2, n)]).astype(float)
    # Defaults rise with bad signals and fall with on-time repayments and with being frozen: frozen's
    # weight would be negative, which the policy forbids (a frozen account is never less risky).
    z = -3.0 + 0.8 * x[:, 0] + 1.5 * x[:, 2] - 0.5 * x[:, 1] - 2.0 * x[:, 3]
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    fit = fit_signed(x, y, USER_FEATURES, l2=1.0)
    assert fit.left_out == ["frozen"] and fit.weights["frozen"] == 0.0
    assert fit.weights["bad_signals"] > 1.0 and fit.weights["on_time_repayments"] < -0.2
    assert fit.weights["utilization"] > 0.3
    for name, sign in USER_FEATURES.items():
        assert fit.weights[name] * sign >= 0


def _scenario_recording(folder: Path) -> Path:
    """30 days of the demo's scenario traffic (more credit stories than the default mix)."""
    from streamrisk.loadgen.scenarios import parse_mix

    mix = parse_mix("late_repayer=0.004,credit_maxout=0.002,charged_back=0.002,on_time_repayer=0.002")
    t = ScenarioTraffic(300, 30, end_ms=NOW, days=30, mix=mix, seed=5, run_id="pd")
    rec = folder / "rec.jsonl"
    rows = (t.next(i / 5000) for i in range(5000))
    rec.write_bytes(b"".join(orjson.dumps({"topic": r.topic, "key": r.key, "value": r.value,
                                           "timestamp": r.value["ts"]}) + b"\n"
                             for r in rows if isinstance(r, Record)))
    return rec


def test_train_pd_writes_a_policy_that_loads_and_prices_with_the_fitted_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = _scenario_recording(tmp_path)
    out, js, png = tmp_path / "pd.yaml", tmp_path / "pd.json", tmp_path / "pd.png"
    assert main(["train", str(rec), "--pd", "--out", str(out), "--json", str(js), "--plot", str(png),
                 "--horizon-days", "7", "--mature-days", "7"]) == 0
    text = capsys.readouterr().out
    assert "held-out part" in text and "roc_auc" in text and "hand-set" in text
    policy = load_policy(out)  # the workers' loader: signs, bounds and bands validated
    metrics = orjson.loads(js.read_bytes())
    fit = metrics["user"]["fit"]
    assert policy.pricing.user.intercept == pytest.approx(fit["intercept"], abs=1e-6)
    assert dict(policy.pricing.user.weights) == pytest.approx(fit["weights"], abs=1e-6)
    assert policy.pricing.horizon_days == 7 and "train --pd" in policy.pricing.fitted
    # Everything but the pricing weights is the shipped policy's.
    shipped = default_policy()
    assert policy.user == shipped.user and policy.merchant == shipped.merchant
    assert policy.pricing.band_price_bp == shipped.pricing.band_price_bp
    assert metrics["user"]["test"]["fitted"]["roc_auc"] > 0.8
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The written file is an ordinary policy: a backtest takes it.
    raw = yaml.safe_load(out.read_text())
    assert raw["pricing"]["fitted"].startswith("streamrisk train --pd")
    rules = Path(__file__).parents[2] / "src/streamrisk/rules/default.yaml"
    assert main(["backtest", str(rec), "--rules", str(rules), "--policy", str(out), "--show", "0"]) == 0
