"""Timeline scenarios for SlidingWindows; ``|`` marks the window end, ``(`` the open start."""

from __future__ import annotations

import pytest

from streamrisk.windows import AddPath, SlidingWindows, WindowSpec

S = 1_000
M = 60 * S
H = 60 * M
FIVE_MIN, HOUR, DAY = 5 * M, H, 24 * H


def windows(**kw) -> SlidingWindows:
    kw.setdefault("horizons", (FIVE_MIN, HOUR, DAY))
    return SlidingWindows(WindowSpec(**kw))


def counts(w: SlidingWindows) -> list[int]:
    return [w.count(i) for i in range(len(w.horizons))]


def test_event_leaves_5m_window_exactly_at_horizon():
    # t:   0 ........................ 5m-1ms  5m
    #      e(100)                     |       |
    #  5m window (end-5m, end]:  e in at end=5m-1ms, out at end=5m
    w = windows()
    w.add(0, 100)
    w.advance(FIVE_MIN - 1)
    assert counts(w) == [1, 1, 1]
    w.advance(FIVE_MIN)
    assert counts(w) == [0, 1, 1]
    assert w.sum(0) == 0 and w.sum(1) == 100


def test_late_event_within_lateness_is_evicted_on_time():
    # t:  0      2m   10m(end)        1h+2m
    #     a      x    b               |   x arrives after b (8m late); in the 1h window it
    #     leaves exactly when end reaches 2m + 1h, one ms after still being counted.
    w = windows()
    w.add(0, 1)
    w.add(10 * M, 2)
    assert w.add(2 * M, 40) is AddPath.LATE_FAST
    assert counts(w) == [1, 3, 3]  # 5m window (5m, 10m] holds only b
    assert w.max(0) == 2 and w.max(1) == 40
    w.advance(HOUR + 2 * M - 1)
    assert counts(w) == [0, 2, 3] and w.max(1) == 40
    w.advance(HOUR + 2 * M)
    assert counts(w) == [0, 1, 3] and w.max(1) == 2 and w.sum(1) == 2


def test_late_event_inside_5m_window_counts_in_every_horizon():
    # t:  0  1m     3m(end)
    #     a  x      b        x arrives last but sits inside all three windows
    w = windows()
    w.add(0, 5)
    w.add(3 * M, 7)
    assert w.add(1 * M, 9) is AddPath.LATE_FAST
    assert counts(w) == [3, 3, 3]
    assert w.sum(0) == 21 and w.max(0) == 9
    assert [e[0] for e in w.events()] == [0, 1 * M, 3 * M]


def test_event_beyond_lateness_is_applied_exactly_and_counted_late_slow():
    # t:  0      2h   10h(end)   x at 2h is 8h behind end: beyond the 1h lateness,
    #     a      x    b          still inside the 24h window.
    w = windows()
    w.add(0, 1)
    w.add(10 * H, 2)
    assert w.add(2 * H, 50) is AddPath.LATE_SLOW
    assert counts(w) == [1, 1, 3]
    assert w.max(2) == 50 and w.sum(2) == 53
    assert w.path_counts[AddPath.LATE_SLOW] == 1
    w.advance(DAY + 2 * H)
    assert counts(w) == [0, 0, 1] and w.max(2) == 2


def test_too_old_event_changes_no_window_and_is_counted():
    # t:  0(x)  ...  24h(end)    x at end - 24h sits on the open start "(" of the day window
    w = windows(dims=("merchant",))
    w.add(DAY, 10, ("m1",))
    before = (counts(w), w.sum(2), w.max(2), w.distinct(2, "merchant"))
    assert w.add(0, 99, ("m2",)) is AddPath.TOO_OLD
    assert (counts(w), w.sum(2), w.max(2), w.distinct(2, "merchant")) == before
    assert len(w) == 1
    assert w.path_counts[AddPath.TOO_OLD] == 1


def test_advance_aligns_end_and_evicts_without_new_events():
    # payments: p@0 ........ chargeback series ends at 30m; entity's latest event 30m
    w = windows()
    w.add(0, 500)
    w.advance(30 * M)
    assert w.end == 30 * M
    assert counts(w) == [0, 1, 1]
    # An event between the old and new end is now 29m late: beyond nothing, within 1h.
    assert w.add(10 * M, 1) is AddPath.LATE_FAST


def test_advance_backwards_is_a_noop():
    w = windows()
    w.add(10 * M, 1)
    w.advance(5 * M)
    assert w.end == 10 * M
    assert counts(w) == [1, 1, 1]


def test_advance_before_any_event_sets_end_and_makes_old_events_too_old():
    w = windows()
    w.advance(2 * DAY)
    assert w.end == 2 * DAY
    assert w.add(DAY, 1) is AddPath.TOO_OLD
    assert w.add(DAY + 1, 1) is AddPath.LATE_SLOW
    assert counts(w) == [0, 0, 1]


def test_events_with_equal_timestamps_leave_together():
    # t: 0(a,a,b)   5m   all three share ts 0 and leave the 5m window at the same end
    w = windows(dims=("merchant",))
    for value, m in [(1, "a"), (1, "a"), (3, "b")]:
        w.add(0, value, (m,))
    assert counts(w)[0] == 3 and w.distinct(0, "merchant") == 2
    w.advance(FIVE_MIN)
    assert counts(w)[0] == 0 and w.distinct(0, "merchant") == 0
    assert w.distinct(1, "merchant") == 2


def test_identical_events_count_twice_but_once_in_distinct():
    w = windows(dims=("merchant", "device"))
    assert w.add(0, 250, ("m1", "d1")) is AddPath.IN_ORDER
    assert w.add(0, 250, ("m1", "d1")) is AddPath.IN_ORDER
    assert (w.count(0), w.sum(0), w.std(0)) == (2, 500, 0.0)
    assert w.distinct(0, "merchant") == 1 and w.distinct(0, 1) == 1


def test_distinct_drops_category_only_when_its_latest_occurrence_leaves():
    # t:   0(m1)   2m(m2)   4m(m1)   5m|   7m|   9m|
    # 5m:  end=5m: m1@0 out, m1@4m in -> {m1,m2}; end=7m: {m1}; end=9m: {}
    w = windows(dims=("merchant",))
    w.add(0, 1, ("m1",))
    w.add(2 * M, 1, ("m2",))
    w.add(4 * M, 1, ("m1",))
    assert w.distinct(0, "merchant") == 2
    w.advance(5 * M)
    assert w.distinct(0, "merchant") == 2
    w.advance(7 * M)
    assert w.distinct(0, "merchant") == 1
    w.advance(9 * M)
    assert w.distinct(0, "merchant") == 0
    assert w.distinct(1, "merchant") == 2


def test_late_event_of_known_category_does_not_double_count_distinct():
    w = windows(dims=("merchant",))
    w.add(10 * M, 1, ("m1",))
    w.add(2 * M, 1, ("m1",))  # late, same merchant
    assert [w.distinct(i, "merchant") for i in range(3)] == [1, 1, 1]
    w.add(3 * M, 1, ("m2",))  # late, outside 5m window only
    assert [w.distinct(i, "merchant") for i in range(3)] == [1, 2, 2]


def test_max_falls_back_to_previous_max_when_it_leaves():
    # t:  0(90)  1m(10)  2m(50)  5m|  6m|  7m|
    w = windows()
    for t, v in [(0, 90), (1 * M, 10), (2 * M, 50)]:
        w.add(t, v)
    assert w.max(0) == 90
    w.advance(5 * M)
    assert w.max(0) == 50
    w.advance(7 * M)
    assert w.max(0) is None and w.max(1) == 90


def test_negative_values_keep_exact_max_and_sum():
    w = windows()
    w.add(0, -500)
    w.add(1, -20)
    assert w.max(0) == -20 and w.sum(0) == -520


def test_std_is_exact_for_large_values_with_small_spread():
    # Float sums of squares would cancel catastrophically at 1e15 magnitude.
    w = windows()
    for v in (10**15, 10**15 + 2):
        w.add(0, v)
    assert w.mean(0) == 10**15 + 1
    assert w.std(0) == 1.0


def test_empty_window_queries_return_neutral_values():
    w = windows(dims=("merchant",))
    assert (w.count(0), w.sum(0), w.mean(0), w.std(0), w.max(0)) == (0, 0, 0.0, 0.0, None)
    assert w.distinct(0, "merchant") == 0 and len(w) == 0 and w.end is None


def test_counter_window_without_max_or_distinct_rejects_those_queries():
    w = windows(horizons=(DAY,), track_max=False)
    w.add(0, 1)
    assert w.count(0) == 1
    with pytest.raises(ValueError, match="max"):
        w.max(0)
    with pytest.raises(ValueError):
        w.distinct(0, "merchant")


def test_wrong_number_of_categories_is_rejected():
    w = windows(dims=("merchant", "device"))
    with pytest.raises(ValueError, match="expected 2"):
        w.add(0, 1, ("m1",))


def test_expired_event_ids_are_reported_once_for_tombstoning():
    # t: 0(id 7)  10h(id 8)   24h|   the record of id 7 can be deleted at end=24h
    w = windows(ids=True)
    w.add(0, 1, eid=7)
    w.add(10 * H, 1, eid=8)
    assert w.pop_expired() == []
    w.advance(DAY)
    assert w.pop_expired() == [7]
    assert w.pop_expired() == []
    assert [e[3] for e in w.events()] == [8]


def test_rebuild_drops_already_expired_events_and_reports_their_ids():
    spec = WindowSpec((FIVE_MIN, DAY), ids=True, dims=("merchant",))
    evs = [(2 * DAY, 3, ("m1",), 2), (0, 1, ("m0",), 1), (2 * DAY - M, 4, ("m2",), 3)]
    w = SlidingWindows.from_events(spec, evs)
    assert w.end == 2 * DAY
    assert w.pop_expired() == [1]
    assert [e[3] for e in w.events()] == [3, 2]
    assert (w.count(0), w.sum(0), w.max(0), w.distinct(0, "merchant")) == (2, 7, 4, 2)


def test_rebuild_with_later_end_applies_the_advance():
    spec = WindowSpec((FIVE_MIN, HOUR))
    w = SlidingWindows.from_events(spec, [(0, 1, ()), (M, 2, ())], end=10 * M)
    assert w.end == 10 * M and [w.count(0), w.count(1)] == [0, 2]


def test_long_stream_compacts_memory_and_forgets_dead_categories():
    w = windows(horizons=(1_000,), dims=("device",))
    for t in range(100_000):
        w.add(t, t % 97, (f"d{t}",))  # every device seen once: unbounded cardinality
    assert len(w) == 1_000 and w.distinct(0, "device") == 1_000
    assert len(w._ts) <= 2 * w.trim_min + 2 * 1_000  # dead prefix is bounded
    assert len(w._dims[0][1]) <= 2 * 1_000 + w.reintern_slack + w.trim_min
    assert w.max(0) == 96 and w.sum(0) == sum(t % 97 for t in range(99_000, 100_000))
