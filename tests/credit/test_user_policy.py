"""The user limit policy, path by path, on plain events (no broker, no table).

Default policy with a 1000.00 initial limit: reviews every 7 days, raise +20 % after 3 on-time
repayments in 30 days (utilization <= 0.8), 30-day cooldown between raises; cuts of 20 % (late),
50 % (chargeback), 30 % (medium alert), floor 500.00, ceiling 50 000.00; freeze on a high alert.

    day 0    1    2    3 ........ 7
        open      on-time x3      review: 1000.00 -> 1200.00 (ON_TIME_REPAYMENTS)
"""

from __future__ import annotations

import itertools

from streamrisk.credit import user as uc

from .conftest import DAY, T0, small_policy
from .driver import UserRun

HIGH, MEDIUM, LOW = 2, 1, 0


def run(**user) -> UserRun:
    return UserRun(small_policy(**user).user, "u1", T0)


def on_time_repayments(r: UserRun, days: list[float], amount: int = 1000) -> None:
    for d in days:
        r.repay(T0 + int(d * DAY), amount)


def test_raise_after_sustained_on_time_repayment() -> None:
    r = run()
    on_time_repayments(r, [1, 2, 3])
    r.repay(T0 + 7 * DAY, 1000)  # the first event after the period: the review
    assert r.adjustments == [uc.Adjustment("review", 100_000, 120_000, ("ON_TIME_REPAYMENTS",), T0 + 7 * DAY)]
    assert r.a.status is uc.Status.COOLDOWN


def test_no_raise_with_high_utilization() -> None:
    r = run()
    r.pay("p1", T0 + DAY, 90_000)  # 90 % of the limit used
    on_time_repayments(r, [1, 2, 3], amount=1)
    r.repay(T0 + 7 * DAY, 1)
    assert r.adjustments == []


def test_cooldown_between_raises_is_respected() -> None:
    r = run()
    # An on-time repayment every other day for 90 days; reviews every 7 days.
    on_time_repayments(r, [1 + 2 * i for i in range(45)])
    raises = [a for a in r.adjustments if a.reasons == ("ON_TIME_REPAYMENTS",)]
    assert [a.new for a in raises] == [120_000, 144_000, 172_800]
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(raises)]
    assert all(g >= 30 * DAY for g in gaps), gaps


def test_late_repayment_cuts_at_once_and_holds_raises_off() -> None:
    r = run()
    on_time_repayments(r, [1, 2, 3])
    r.repay(T0 + 4 * DAY, 500, on_time=False)  # past due: cut in the step of the repayment itself
    assert r.adjustments == [uc.Adjustment("cut", 100_000, 80_000, ("REPAYMENT_PAST_DUE",), T0 + 4 * DAY)]
    r.repay(T0 + 7 * DAY, 500)  # the review: no second cut for it, and no raise (hysteresis)
    r.repay(T0 + 14 * DAY, 500)
    assert len(r.adjustments) == 1
    assert r.a.last_cut == T0 + 4 * DAY


def test_service_dispute_is_cut_at_the_review_bounded_by_the_floor() -> None:
    r = run(cut_chargeback_pct=50)
    r.pay("p1", T0 + DAY, 10_000)
    assert r.chargeback("p1", T0 + 3 * DAY, "not_received") == 10_000  # the draw is reversed ...
    assert (r.adjustments, r.a.status) == ([], uc.Status.ACTIVE)  # ... and nothing is frozen or cut yet
    r.chargeback("p0", T0 + 2 * DAY, "not_as_described")  # out of order: both count at the review
    r.repay(T0 + 8 * DAY, 100)
    # 50 % of 1000.00 is 500.00, exactly the floor.
    assert r.adjustments == [uc.Adjustment("review", 100_000, 50_000, ("CHARGEBACK_RECEIVED",), T0 + 8 * DAY)]
    r.chargeback("p2", T0 + 9 * DAY, "duplicate")
    r.repay(T0 + 16 * DAY, 100)
    assert r.a.limit == 50_000  # at the floor: no further cut, no adjustment
    assert len(r.adjustments) == 1


def test_fraud_chargeback_reverses_its_draw_and_freezes_at_once() -> None:
    r = run()
    for i in range(4):
        assert r.pay(f"p{i}", T0 + i * DAY, 20_000)
    assert r.chargeback("p2", T0 + 5 * DAY, "unauthorized") == 20_000
    assert r.adjustments == [
        uc.Adjustment("freeze", 100_000, 60_000, ("FRAUD_FREEZE", "FRAUD_CHARGEBACK"), T0 + 5 * DAY)]
    assert (r.a.limit, r.a.outstanding, r.a.available, r.a.status) == (60_000, 60_000, 0, uc.Status.FROZEN)
    # A second one extends the freeze without another adjustment; a past-due repayment cuts nothing.
    r.chargeback("p3", T0 + 6 * DAY, "fraud")
    r.repay(T0 + 7 * DAY, 10_000, on_time=False)
    assert len(r.adjustments) == 1 and r.a.until == T0 + 36 * DAY
    r.repay(T0 + 35 * DAY, 1)  # a review (due since day 14), a day before the freeze ends
    assert r.a.status is uc.Status.FROZEN
    r.repay(T0 + 41 * DAY, 1)
    assert r.a.status is uc.Status.FROZEN  # the next review is due on day 42
    r.repay(T0 + 42 * DAY, 1)  # the first review at or after the freeze's end lifts it
    # The limit stays what the freeze left (600.00, above the floor: no adjustment), now available.
    assert (r.a.status, r.a.limit, len(r.adjustments)) == (uc.Status.ACTIVE, 60_000, 1)
    assert r.a.available == 60_000 - r.a.outstanding > 0


def test_chargeback_reasons_that_freeze_come_from_the_policy() -> None:
    r = run(freeze_chargeback_reasons=["fraud"])
    r.pay("p1", T0, 10_000)
    r.chargeback("p1", T0 + DAY, "unauthorized")  # not listed here: a service dispute
    assert (r.adjustments, r.a.status) == ([], uc.Status.ACTIVE)


def test_raise_is_capped_by_the_ceiling() -> None:
    r = UserRun(small_policy(initial_limit=1000.0, ceiling=1100.0).user, "u1", T0)
    on_time_repayments(r, [1, 2, 3, 7])
    assert r.limits == [110_000]


def test_step_bounds_cap_a_cut() -> None:
    r = UserRun(small_policy(cut_chargeback_pct=90, max_cut_pct=50, floor=0.0).user, "u1", T0)
    r.chargeback("none", T0 + DAY)
    r.repay(T0 + 7 * DAY, 1)
    assert r.limits == [50_000]


def test_high_severity_alert_freezes_at_once() -> None:
    r = run()
    assert r.pay("p1", T0 + DAY, 30_000)
    adj = uc.alerts(r.a, T0 + DAY, [("VELOCITY_5M", HIGH)], r.p)
    assert adj == uc.Adjustment("freeze", 100_000, 30_000, ("FRAUD_FREEZE", "VELOCITY_5M"), T0 + DAY)
    assert (r.a.limit, r.a.available, r.a.status) == (30_000, 0, uc.Status.FROZEN)
    r.repay(T0 + 2 * DAY, 30_000)
    assert r.a.available == 0  # nothing to draw while frozen, even when repaid
    assert not r.pay("p2", T0 + 3 * DAY, 100)
    # Lifted at the first review 30 days after the freeze: back to the floor at least.
    r.repay(T0 + 29 * DAY, 1)
    assert r.a.status is uc.Status.FROZEN
    r.repay(T0 + 37 * DAY, 1)
    assert r.a.status is uc.Status.ACTIVE
    assert r.a.limit == 50_000
    assert uc.alerts(r.a, T0 + 38 * DAY, [("USER_CHARGEBACKS", HIGH)], r.p) is None  # ignored by policy


def test_medium_alert_cuts_and_low_alert_is_ignored() -> None:
    r = run()
    r.pay("p1", T0 + DAY, 100, alerts=[("AMOUNT_OUTLIER", LOW)])
    r.repay(T0 + 7 * DAY, 1)
    assert r.adjustments == []
    r.pay("p2", T0 + 8 * DAY, 100, alerts=[("DEVICE_HOPPING", MEDIUM)])
    r.repay(T0 + 14 * DAY, 1)
    assert r.limits == [70_000]


def test_alternating_signals_never_raise_the_limit() -> None:
    """Hysteresis: a raise needs a clean look-back and on-time repayments after the last cut, so a
    user alternating late and on-time repayments only ever goes down, never up and down."""
    r = UserRun(small_policy(initial_limit=5000.0).user, "u1", T0)
    for week in range(26):
        r.repay(T0 + week * 7 * DAY + DAY, 100, on_time=week % 2 == 1)
        r.repay(T0 + week * 7 * DAY + 2 * DAY, 100, on_time=True)
        r.repay(T0 + week * 7 * DAY + 3 * DAY, 100, on_time=True)
    limits = [500_000, *r.limits]
    assert all(b < a for a, b in itertools.pairwise(limits)), limits
    assert r.a.limit == 50_000


def test_repayment_restores_availability_and_never_goes_below_zero() -> None:
    r = run()
    assert r.pay("p1", T0 + DAY, 30_000)
    assert r.a.available == 70_000
    r.repay(T0 + 2 * DAY, 20_000)
    assert (r.a.outstanding, r.a.available) == (10_000, 90_000)
    r.repay(T0 + 3 * DAY, 50_000)
    assert (r.a.outstanding, r.a.available) == (0, 100_000)


def test_chargeback_reverses_only_its_own_draw_once() -> None:
    r = run()
    r.pay("p1", T0 + DAY, 30_000)
    r.pay("p2", T0 + DAY, 20_000)
    assert r.chargeback("p1", T0 + 2 * DAY) == 30_000
    assert r.chargeback("p1", T0 + 2 * DAY) == 0
    assert r.chargeback("card-payment", T0 + 2 * DAY) == 0
    assert r.a.outstanding == 20_000


def test_over_limit_payment_draws_nothing() -> None:
    r = run()
    assert not r.pay("p1", T0 + DAY, 100_001)
    assert r.a.outstanding == 0
    assert r.pay("p2", T0 + DAY, 100_000)
    assert r.a.available == 0


def test_a_segment_sets_the_initial_limit() -> None:
    p = small_policy(segments=[{"match": "vip-*", "initial_limit": 9000.0}]).user
    assert (p.initial_limit_for("vip-7"), p.initial_limit_for("u-7")) == (900_000, 100_000)


def test_tracked_draws_are_bounded() -> None:
    r = UserRun(small_policy(max_tracked_draws=3).user, "u1", T0)
    for i in range(5):
        r.pay(f"p{i}", T0 + DAY + i, 100)
    assert list(r.a.draws) == ["p2", "p3", "p4"]
    assert r.chargeback("p0", T0 + 2 * DAY) == 0  # dropped: no longer reversible


def test_account_round_trips_through_its_record() -> None:
    r = run()
    r.pay("p1", T0 + DAY, 100, alerts=[("DEVICE_HOPPING", MEDIUM)])
    on_time_repayments(r, [2, 3])
    again = uc.UserAccount.from_list(uc.UserAccount.from_list(r.a.to_list()).to_list())
    assert again == r.a
