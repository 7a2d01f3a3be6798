"""The load test's progress bar renders on a terminal (it is disabled elsewhere, so only a terminal
shows whether its status field is set)."""

from __future__ import annotations

import io

from rich.console import Console

from streamrisk.loadgen.loadtest import progress_bar


def test_progress_bar_renders_on_a_terminal_before_and_after_updates() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    bar, task = progress_bar(console, 10.0)
    with bar:
        bar.refresh()  # the first frame, before any update
        bar.update(task, completed=5.0, status="sent 10 payments  decided 9")
        bar.refresh()
    shown = screen.getvalue()
    assert "warming up" in shown and "sent 10 payments  decided 9" in shown
    assert not bar.disable


def test_progress_bar_is_off_when_output_is_not_a_terminal() -> None:
    bar, _ = progress_bar(Console(file=io.StringIO(), force_terminal=False), 10.0)
    assert bar.disable
