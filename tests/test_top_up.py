"""When the worker's fetch loop joins one more fetch to a batch (runtime/faust/transport.py, TopUp)."""

from __future__ import annotations

from streamrisk.runtime.faust.transport import TopUp


def test_records_that_waited_through_a_long_batch_are_topped_up() -> None:
    top_up = TopUp(wait_s=0.003)
    top_up.last_batch_s = 0.008  # the last batch was processed and committed meanwhile
    assert top_up.due(fetch_s=0.0001)  # its records were waiting when asked for: stale


def test_fresh_records_after_an_idle_wait_or_a_short_batch_are_not() -> None:
    top_up = TopUp(wait_s=0.003)
    top_up.last_batch_s = 0.008
    assert not top_up.due(fetch_s=0.05)  # the fetch waited for them: nothing more is on its way
    top_up.last_batch_s = 0.001
    assert not top_up.due(fetch_s=0.0001)  # too short a batch for much to arrive behind them


def test_a_wait_of_zero_turns_it_off() -> None:
    top_up = TopUp(wait_s=0.0)
    top_up.last_batch_s = 1.0
    assert not top_up.due(fetch_s=0.0)
