"""Replay pacing: by event time divided by the speed, moving only forward; or a fixed rate; or none."""

from __future__ import annotations

import orjson
import pytest

from streamrisk.recording.jsonl import Recorded
from streamrisk.recording.replay import Pacer


def rec(ts: int | None) -> Recorded:
    value = b"{not json" if ts is None else orjson.dumps({"ts": ts})
    return Recorded("payments", "u1", value, timestamp=10**13)  # record time far from event time


def test_speed_paces_by_event_time_and_late_or_malformed_records_go_at_once() -> None:
    pacer = Pacer(speed=4)
    dues = [pacer.due(rec(t)) for t in (1000, 3000, 2000, None, 5000)]
    # 2 s of event time at 4x is 0.5 s; the late record waits for nothing; the malformed one has
    # no event time (its record time, far later, must not stall the replay).
    assert dues == [0.0, 0.5, 0.5, None, 1.0]
    assert pacer.span_ms == 4000


def test_rate_sends_a_fixed_number_per_second_and_no_pacing_sends_at_once() -> None:
    pacer = Pacer(rate=10)
    assert [pacer.due(rec(t)) for t in (5, 1, None)] == [0.0, 0.1, 0.2]
    assert Pacer().due(rec(1)) is None


@pytest.mark.parametrize("kw", [{"speed": 0}, {"rate": -1}])
def test_a_speed_or_rate_that_cannot_pace_is_refused(kw: dict) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        Pacer(**kw)
