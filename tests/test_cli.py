"""`streamrisk publish-rules --check`: a broken ruleset is refused with every problem, a good one passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrisk.cli import main


def test_publish_rules_refuses_a_broken_file_and_names_its_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text('version: "x"\nrules:\n  - {name: fast, when: "user.nope > 1.0", action: block,'
                   " severity: high, reason: FAST}\n")
    assert main(["publish-rules", "--check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "not published" in err and "unknown action 'block'" in err


def test_publish_rules_check_accepts_the_default_ruleset(capsys: pytest.CaptureFixture[str]) -> None:
    default = Path(__file__).parents[1] / "src/streamrisk/rules/default.yaml"
    assert main(["publish-rules", "--check", str(default)]) == 0
    assert "is valid" in capsys.readouterr().out


def _recording(path: Path) -> None:
    from streamrisk.loadgen import patterns

    now = 1_700_000_000_000
    recs = [*patterns.velocity_burst("v1", now), patterns.payment("b1:p", "b1", "s", 900.0, now + 1),
            patterns.chargeback("b1:cb", "b1:p", "b1", "s", 900.0, now + 3 * patterns.DAY)]
    import orjson

    path.write_bytes(b"".join(orjson.dumps({"topic": t, "key": k, "value": v, "timestamp": v["ts"]}) + b"\n"
                              for t, k, v in recs))


def test_backtest_prints_the_comparison_and_writes_the_changed_payments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec, rules, changes = tmp_path / "rec.jsonl", tmp_path / "cand.yaml", tmp_path / "changes.jsonl"
    _recording(rec)
    rules.write_text('version: "cand"\nrules:\n  - {name: big, when: "payment.amount >= 500.0", '
                     "action: decline, severity: high, reason: BIG}\n")
    assert main(["backtest", "--rules", str(rules), "--changes", str(changes), str(rec)]) == 0
    out = capsys.readouterr().out
    assert "candidate: ruleset cand" in out and "faster than real time" in out
    assert "recall (decline)" in out
    lines = changes.read_text().splitlines()
    import orjson

    changed = {orjson.loads(x)["event_id"]: orjson.loads(x) for x in lines}
    # The candidate has no velocity rule: the burst's declines become approvals; b1 is declined.
    assert changed["b1:p"]["after"] == {"action": "decline", "reasons": ["BIG"]}
    assert changed["b1:p"]["charged_back"] is True
    assert all(c["after"]["action"] == "approve" for e, c in changed.items() if e != "b1:p")


def test_backtest_says_clearly_that_a_credit_policy_is_not_built_yet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec, policy = tmp_path / "rec.jsonl", tmp_path / "policy.yaml"
    _recording(rec)
    policy.write_text("{}")
    default = Path(__file__).parents[1] / "src/streamrisk/rules/default.yaml"
    assert main(["backtest", "--rules", str(default), "--policy", str(policy), str(rec)]) == 0
    out = capsys.readouterr().out
    assert "credit policy: not built in this version" in out and "credit adjustments: none" in out


def test_backtest_names_a_missing_recording_and_a_broken_ruleset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    default = Path(__file__).parents[1] / "src/streamrisk/rules/default.yaml"
    assert main(["backtest", "--rules", str(default), str(tmp_path / "none.jsonl")]) == 1
    assert "none.jsonl does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text('version: "x"\nrules: 3\n')
    assert main(["backtest", "--rules", str(bad), str(tmp_path / "none.jsonl")]) == 1
    assert "rules must be a list" in capsys.readouterr().err
