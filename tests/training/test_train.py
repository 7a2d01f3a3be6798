"""Training end to end on the scenario traffic, offline: the ruleset written round-trips through the
loader and scores as trained, and `streamrisk train` then `streamrisk backtest` work on a recording."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import orjson
import pytest
import yaml

from streamrisk.cli import main
from streamrisk.loadgen.scenarios import ScenarioTraffic, parse_mix
from streamrisk.loadgen.synthetic import Record
from streamrisk.recording.jsonl import read_recording
from streamrisk.rules import default_ruleset, load_ruleset
from streamrisk.settings import Settings
from streamrisk.training.export import FEATURES, export_features
from streamrisk.training.train import TrainConfig, train

END = 1_764_000_000_000
N = 6000


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Scenario traffic over 30 days with more fraud than the default mix, as a recording (event time
    as record time) and the generator's labels beside it."""
    mix = parse_mix("velocity_burst=0.003,card_testing=0.003,account_takeover=0.003,bust_out=0.001")
    t = ScenarioTraffic(300, 30, end_ms=END, days=30, mix=mix, seed=5, run_id="t")
    sent = [t.next(i / N) for i in range(N)]
    folder = tmp_path_factory.mktemp("train")
    rec, labels = folder / "rec.jsonl", folder / "labels.jsonl"
    rec.write_bytes(b"".join(orjson.dumps({"topic": r.topic, "key": r.key, "value": r.value,
                                           "timestamp": r.value["ts"]}) + b"\n"
                             for r in sent if isinstance(r, Record)))
    labels.write_bytes(b"".join(orjson.dumps(lab.as_dict()) + b"\n" for lab in t.labels))
    return rec, labels


def test_the_written_ruleset_loads_and_scores_every_payment_as_trained(recorded) -> None:
    rec, _ = recorded
    export = export_features(read_recording(rec), Settings(), default_ruleset())
    result = train(export, default_ruleset(), TrainConfig(), "ab" * 32)
    loaded = load_ruleset(yaml.safe_load(yaml.safe_dump(result.ruleset_mapping(), sort_keys=False)))
    assert loaded.version == "learned-abababababab"
    assert [f.key for f in loaded.score_model.features] == list(FEATURES)
    x = export.matrix()
    live = np.array([loaded.score_model.score_of(list(row)) for row in x])
    assert np.allclose(live, result.learned, rtol=0, atol=1e-12)
    assert loaded.score_model.decline_at == result.decline_at
    # The rules are the hand-set ruleset's, unchanged: only the score was learned.
    assert [r.name for r in loaded.rules] == [r.name for r in default_ruleset().rules]
    trained = loaded.to_mapping()["meta"]["trained"]
    assert trained["recording_sha256"] == "ab" * 32 and trained["base_ruleset"] == default_ruleset().version
    assert trained["metrics"]["test"]["learned"]["roc_auc"] > 0.9
    # Learned beats hand-set on the held-out part of this traffic.
    test = result.metrics["test"]
    assert test["learned"]["pr_auc"] > test["handset"]["pr_auc"]


def test_train_command_writes_a_ruleset_that_backtest_takes(
    recorded, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec, labels = recorded
    out, png, js = tmp_path / "learned.yaml", tmp_path / "cal.png", tmp_path / "m.json"
    assert main(["train", str(rec), "--out", str(out), "--plot", str(png), "--json", str(js),
                 "--labels", str(labels), "--horizon-days", "20"]) == 0
    text = capsys.readouterr().out
    assert "ROC-AUC (score)" in text and "PR-AUC (score)" in text and "quality per scenario" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = orjson.loads(js.read_bytes())
    assert metrics["train"]["positives"] > 10 and "velocity_burst" in metrics["per_scenario"]
    ruleset = load_ruleset(out)
    meta = ruleset.to_mapping()["meta"]["trained"]
    assert meta["recording_sha256"] == hashlib.sha256(rec.read_bytes()).hexdigest()
    assert meta["config"]["horizon_days"] == 20.0
    assert main(["backtest", "--rules", str(out), str(rec), "--show", "0"]) == 0
    assert f"candidate: ruleset {ruleset.version}" in capsys.readouterr().out


def test_train_refuses_a_recording_without_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rec = tmp_path / "quiet.jsonl"
    lines = [{"topic": "payments", "key": "u", "value": {
        "event_id": f"p{i}", "ts": END + i * 60_000, "user_id": "u", "merchant_id": "m", "amount": 10.0,
        "currency": "CNY", "method": "card"}} for i in range(40)]
    rec.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    assert main(["train", str(rec), "--out", str(tmp_path / "x.yaml")]) == 1
    assert "nothing to learn" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.jsonl")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["train", str(rec), "--split", "1.0"]) == 2
    assert "--split must be within (0, 1), got 1.0" in capsys.readouterr().err


def test_mature_days_leaves_the_recordings_last_days_out_of_both_parts(recorded) -> None:
    rec, _ = recorded
    export = export_features(read_recording(rec), Settings(), default_ruleset())
    result = train(export, default_ruleset(), TrainConfig(mature_days=5), "cd" * 32)
    last = max(export.ts)
    used = np.concatenate([result.train_idx, result.test_idx])
    assert max(export.ts[i] for i in used) <= last - 5 * 86_400_000
    left = result.metrics["test"]["left_out_recent"]
    assert left > 0 and len(used) + left == len(export)
    assert all(export.ts[i] > last - 5 * 86_400_000 for i in set(range(len(export))) - set(used.tolist()))
