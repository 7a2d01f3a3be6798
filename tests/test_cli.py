"""`streamrisk publish-rules --check`: a broken ruleset is refused with every problem, a good one passes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from streamrisk.cli import main
from streamrisk.procs import free_port

DEFAULT_RULES = Path(__file__).parents[1] / "src/streamrisk/rules/default.yaml"


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


# -- what a user can get wrong ends in one line and a non-zero exit, never a traceback


def web_port() -> list[str]:
    return ["--web-port", str(free_port())]  # 6066 may be taken by another worker on this machine


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def no_broker(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("STREAMRISK_CONNECT_TIMEOUT_S", "1")
    return "127.0.0.1:1"


@pytest.mark.parametrize("command", [["produce"], ["loadtest"], ["publish-rules", str(DEFAULT_RULES)]])
def test_unreachable_broker_is_retried_then_named_with_how_to_start_one(
    command: list[str], no_broker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--bootstrap", no_broker]) == 2
    err = one_line_error(capsys)
    assert f"no Kafka broker answered at {no_broker}" in err and "`streamrisk broker`" in err
    attempts = int(err.split("(")[1].split()[0])
    assert attempts >= 2  # retried with backoff, not given up at once


def test_unreachable_broker_stops_a_worker_in_one_line(
    no_broker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker", "--bootstrap", no_broker, "--data-dir", str(tmp_path), *web_port()]) == 2
    assert "no Kafka broker answered" in one_line_error(capsys)


def test_debug_log_level_still_shows_the_traceback(
    no_broker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["produce", "--bootstrap", no_broker, "--log-level", "debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "UserError" in err
    assert err.strip().splitlines()[-1].startswith("streamrisk produce: no Kafka broker answered")


def test_rules_file_with_a_yaml_error_names_file_line_and_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text('version: "x"\nrules:\n  - name: a\n    when: [1,\n  bad: : x\n')
    assert main(["worker", "--rules", str(bad), "--data-dir", str(tmp_path), *web_port()]) == 2
    err = one_line_error(capsys)
    assert f"cannot parse {bad}, line 5 column 8" in err and "found ':'" in err


def test_missing_rules_and_replay_files_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["worker", "--rules", str(tmp_path / "nope.yaml"), "--data-dir", str(tmp_path), *web_port()]
    assert main(argv) == 2
    assert f"cannot read {tmp_path / 'nope.yaml'}" in one_line_error(capsys)
    assert main(["replay", str(tmp_path / "nope.jsonl")]) == 2
    assert f"{tmp_path / 'nope.jsonl'}: No such file or directory" in one_line_error(capsys)


def test_invalid_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAMRISK_MAX_RECORD_BYTES", "lots")
    assert main(["produce"]) == 2
    assert "STREAMRISK_MAX_RECORD_BYTES must be an integer (got 'lots')" in one_line_error(capsys)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["worker", "--web-port", "0"], "web port 0 is out of range: use 1..65535"),
        (["worker", "--web-port", "70000"], "web port 70000 is out of range"),
        (["broker", "--port", "70000"], "broker port 70000 is out of range"),
    ],
)
def test_port_out_of_range_is_refused(
    argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert needle in one_line_error(capsys)


@pytest.mark.parametrize("command", ["worker", "broker"])
def test_port_in_use_is_refused(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        flag = "--web-port" if command == "worker" else "--port"
        extra = ["--data-dir", str(tmp_path)] if command == "worker" else []
        assert main([command, flag, str(port), *extra]) == 2
    assert f"port {port} on 127.0.0.1 is in use" in one_line_error(capsys)


def test_unusable_data_dir_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["worker", "--data-dir", str(blocker / "data"), *web_port()]) == 2
    assert f"cannot use {blocker / 'data'}: Not a directory" in one_line_error(capsys)


def test_mispartitioned_topics_stop_the_worker_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # ensure_topics raising it is tested on the brokers (tests/integration/test_hostile_input.py).
    from streamrisk import cli
    from streamrisk.runtime import worker
    from streamrisk.runtime.topics import TopicLayoutError

    async def reachable(*_: object) -> None:
        return None

    def run_worker(_: object) -> int:
        raise TopicLayoutError("topic 'orders' has 2 partitions, this worker needs 4: ...")

    monkeypatch.setattr(cli, "wait_for_broker", reachable)
    monkeypatch.setattr(worker, "run_worker", run_worker)
    assert main(["worker", "--data-dir", str(tmp_path), *web_port()]) == 2
    assert one_line_error(capsys).startswith("streamrisk worker: topic 'orders' has 2 partitions")


def test_demo_refuses_a_bad_environment_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STREAMRISK_PARTITIONS", "x")
    assert main(["demo", "--duration", "1"]) == 2
    assert "STREAMRISK_PARTITIONS must be an integer (got 'x')" in one_line_error(capsys)


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


def test_backtest_with_a_credit_policy_counts_the_adjustments_of_both_sides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = tmp_path / "rec.jsonl"
    _recording(rec)
    src = Path(__file__).parents[1] / "src/streamrisk"
    policy = src / "credit/default_policy.yaml"
    rules = src / "rules/default.yaml"
    assert main(["backtest", "--rules", str(rules), "--policy", str(policy), str(rec)]) == 0
    out = capsys.readouterr().out
    assert "credit adjustments" in out
    # v1's burst (a high alert) and b1's fraud chargeback each freeze a limit at once (each a cut), on
    # both sides alike.
    assert any(line.split()[:2] == ["limit", "cut"] and line.split()[2:4] == ["2", "2"]
               for line in out.splitlines()), out


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


@pytest.mark.parametrize("args", [["--brokers", "3"], ["--kafka", "--brokers", "0"]], ids=["tansu", "zero"])
def test_a_broker_cluster_needs_kafka_and_at_least_one_node(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["broker", "--port", "0", *args]) == 2
    assert "--brokers" in capsys.readouterr().err
