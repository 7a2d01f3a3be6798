"""`streamrisk loadtest --bootstrap` against a running worker: every payment decided and timed, the
malformed records dead-lettered, quality judged per scenario, report.json and the plots written."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from streamrisk.cli import main
from tests.harness import WorkerProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

MIX = "velocity_burst=0.01,card_testing=0.01,account_takeover=0.01,late_repayer=0.01"


def test_loadtest_against_running_workers_writes_its_report(
    bootstrap: str, prefix: str, worker: WorkerProcess, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("STREAMRISK_APP_ID", worker.env["STREAMRISK_APP_ID"])
    out = tmp_path / "report"
    code = main(["loadtest", "--bootstrap", bootstrap, "--topic-prefix", prefix, "--duration", "5",
                 "--rate", "150", "--users", "200", "--merchants", "30", "--malformed", "0.02",
                 "--scenario-mix", MIX, "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, worker.log()
    report = orjson.loads((out / "report.json").read_bytes())
    sent, decisions = report["sent"], report["decisions"]
    assert sent["per_topic"]["payments"] > 100
    assert decisions["undecided"] == 0 and decisions["repeats"] == 0
    # Every valid measured payment is timed (the warm-up's are not; malformed ones are payments too).
    assert report["latency_ms"]["n"] == sent["per_topic"]["payments"] - sent["malformed"]
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"] <= report["latency_ms"]["max"]
    assert report["dead_letters"]["total"] == sent["malformed"] > 0
    assert report["series"]["lag_t"], "consumer lag was never sampled"
    assert report["merchant_view_lag_ms"]["n"] > 0, "no merchant summary was matched to its event"
    quality = report["quality"]["decisions"]
    assert quality["normal"]["payments"] > 0
    fraud = sum(quality[s]["fraud_payments"] for s in ("velocity_burst", "card_testing", "account_takeover")
                if s in quality)
    assert fraud > 0
    labels = (out / "labels.jsonl").read_bytes().splitlines()
    assert len(labels) == sent["total"]  # one ground-truth line per event sent
    for name in ("latency_over_time", "latency_histogram", "throughput", "lag"):
        assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "produce -> decision" in printed and "Quality per scenario" in printed
    # The credit losses of what was sent, adaptive beside static, in all and per scenario.
    assert "credit losses per scenario" in printed and "late_repayer" in printed
    losses = report["credit_losses"]
    assert losses["adaptive"]["approved_credit_volume"] > 0 and losses["static"]["approved_credit_volume"] > 0
