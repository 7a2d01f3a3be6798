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
