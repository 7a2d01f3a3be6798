"""The two features about one payment against its user's past: amount z-score and new device."""

from __future__ import annotations

import pytest

from streamrisk.features.entities import DAY_MS, U_PAYMENT, UserState, WindowConfig
from streamrisk.settings import Settings
from streamrisk.state.chunks import HeldEvent

T0 = 1_800_000_000_000
CFG = WindowConfig(Settings().windows)


def user_with(*payments: tuple[int, int, str]) -> UserState:
    """(ts, amount in minor units, device) each."""
    u = UserState(CFG)
    for i, (ts, amount, device) in enumerate(payments):
        u.apply(HeldEvent(f"p{i}", U_PAYMENT, ts, amount, ("m", device)))
    return u


def pay(u: UserState, ts: int, amount: int, device: str = "d1") -> tuple[bool, float]:
    new = u.device_is_new(device, ts)
    u.apply(HeldEvent(f"x{ts}", U_PAYMENT, ts, amount, ("m", device)))
    return new, u.amount_zscore(ts, amount)


def test_zscore_is_against_the_other_payments_of_30_days() -> None:
    # history 20, 30, 40 (mean 30, std 8.165) then 60: z = 30 / 8.165
    u = user_with((T0, 2000, "d1"), (T0 + 1, 3000, "d1"), (T0 + 2, 4000, "d1"))
    _, z = pay(u, T0 + 3, 6000)
    assert z == pytest.approx(30 / (200 / 3) ** 0.5)


def test_zscore_needs_three_other_payments() -> None:
    u = user_with((T0, 2000, "d1"), (T0 + 1, 2000, "d1"))
    assert pay(u, T0 + 2, 90_000)[1] == 0.0


def test_zscore_deviation_is_floored_so_a_steady_payer_is_not_infinite() -> None:
    u = user_with(*[(T0 + i, 1000, "d1") for i in range(5)])
    # std 0 -> floor max(10 % of 10.00, 1.00) = 1.00: 10.50 is half a deviation above.
    assert pay(u, T0 + 9, 1050)[1] == pytest.approx(0.5)


def test_payments_older_than_30_days_are_not_history() -> None:
    u = user_with(*[(T0 + i, 100, "d1") for i in range(5)])
    _, z = pay(u, T0 + 31 * DAY_MS, 5000)
    assert z == 0.0


def test_new_device_means_unseen_in_30_days_by_a_user_with_history() -> None:
    assert pay(UserState(CFG), T0, 1000, "d1")[0] is False  # a first payment ever is not "new device"
    u = user_with((T0, 1000, "d1"))
    assert pay(u, T0 + 1, 1000, "d1")[0] is False
    assert pay(u, T0 + 2, 1000, "d2")[0] is True
    assert pay(u, T0 + 3, 1000, "d2")[0] is False  # seen a moment ago
    assert pay(u, T0 + 4, 1000, "")[0] is False  # no device_id: unknown, not new
    # d1 last used over 30 days before: new again (the user paid within 30 days from d2).
    v = user_with((T0, 1000, "d1"), (T0 + 20 * DAY_MS, 1000, "d2"))
    assert pay(v, T0 + 31 * DAY_MS, 1000, "d1")[0] is True
