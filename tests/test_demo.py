"""`streamrisk loadtest` and `demo` refuse bad flags before starting anything, naming each problem."""

from __future__ import annotations

import pytest

from streamrisk.cli import main


@pytest.mark.parametrize("argv, problems", [
    (["loadtest", "--rate", "0", "--workers", "-1"], ["--rate must be > 0", "--workers must be >= 0"]),
    (["loadtest", "--scenario-mix", "phishing=0.1"], ["expected name=share"]),
    (["demo", "--duration", "-5", "--scenario-mix", "card_testing=0.9"], ["--duration must be > 0",
                                                                           "within 0..0.05"]),
])
def test_bad_flags_are_usage_errors_naming_every_problem(
    argv: list[str], problems: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert all(p in err for p in problems), err
    assert "starting the embedded" not in err
