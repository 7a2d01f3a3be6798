"""User and merchant feature state: each entity's event series over exact sliding windows.

Every feature window ends at the entity's latest event time (CONTRACT.md, "Features"), so before a
read every series of the entity is advanced to that time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

from ..state.chunks import HeldEvent
from ..windows import AddPath, SlidingWindows, WindowSpec

DAY_MS = 86_400_000
RATE_HORIZON_MS = 30 * DAY_MS  # chargeback and repayment rates are 30-day by contract
HOUR_MS = 3_600_000
# amount_zscore_30d: the fewest other payments that make a mean, and the deviation's floor
# as a fraction of the mean (a user paying 10.00, 10.00, 10.00 then 10.50 is not an outlier).
ZSCORE_MIN_HISTORY = 3
ZSCORE_STD_FLOOR = 0.1

# Series codes, persisted with each held event: never renumber.
U_PAYMENT, U_CHARGEBACK, U_REPAYMENT = 0, 1, 2
M_PLACED, M_FULFILLED, M_REFUNDED, M_PAYMENT, M_CHARGEBACK, M_REPAYMENT, M_CANCELLED = range(10, 17)
# A refund held at its order's fulfilment time (credit/book.py), so it leaves the settlement window
# with the order it refunds: receivables count only refunds on orders fulfilled in the period.
M_SETTLED_REFUND = 17


@dataclass(frozen=True)
class WindowConfig:
    """The feature windows by name (e.g. {"5m": 300000, ...}), the lateness, the settlement period."""

    windows: Mapping[str, int]
    allowed_lateness_ms: int = HOUR_MS
    settlement_ms: int = 30 * DAY_MS

    @property
    def horizons(self) -> tuple[int, ...]:
        return tuple(self.windows.values())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.windows)

    @property
    def retention_ms(self) -> int:
        """How long an event must be held: the widest window any feature needs."""
        return max(*self.horizons, RATE_HORIZON_MS, self.settlement_ms)

    # Window specs are shared by every entity (built once per worker). A spec holds each distinct
    # horizon once: the features name their windows by position in the horizon tuples below (the
    # configured windows, then the fixed ones), and several positions often share one horizon (the
    # 30-day rate window is the configured "30d"; the settlement period is 30 days), so a window is
    # kept (and evicted from) once per distinct horizon. `_at` maps positions to the spec's windows.
    def _spec(
        self, horizons: tuple[int, ...], dims: tuple[str, ...] = (), track_max: bool = False
    ) -> WindowSpec:
        return WindowSpec(
            tuple(dict.fromkeys(horizons)), dims=dims, track_max=track_max,
            lateness=self.allowed_lateness_ms,
        )

    @staticmethod
    def _at(horizons: tuple[int, ...]) -> tuple[int, ...]:
        """The window of `_spec(horizons)` that answers for each position of `horizons`."""
        distinct = tuple(dict.fromkeys(horizons))
        return tuple(distinct.index(h) for h in horizons)

    # Feature names per window, formatted once per worker instead of once per read.
    def _keys(self, *measures: str) -> tuple[tuple[str, ...], ...]:
        return tuple(tuple(f"{m}_{w}" for m in measures) for w in self.names)

    @cached_property
    def user_keys(self) -> tuple[tuple[str, ...], ...]:
        return self._keys(
            "payment_count", "payment_amount_sum", "payment_amount_mean", "payment_amount_std",
            "payment_amount_max", "distinct_merchants", "distinct_devices",
        )

    @cached_property
    def merchant_keys(self) -> tuple[tuple[str, ...], ...]:
        return self._keys(
            "order_count", "order_amount_sum", "fulfilled_amount_sum", "refund_count",
            "refund_rate", "distinct_buyers", "payment_count",
        )

    # Positions: the configured windows, then the 30-day rate window (user payments); the same, then
    # the settlement period (merchant orders); the same, then the trailing 1 h and 24 h that feed
    # sales_velocity_1h and the credit line's sales trend whatever windows are configured (merchant
    # amounts: fulfilled, refunded, paid).
    @cached_property
    def user_horizons(self) -> tuple[int, ...]:
        return (*self.horizons, RATE_HORIZON_MS)

    @cached_property
    def order_horizons(self) -> tuple[int, ...]:
        return (*self.horizons, RATE_HORIZON_MS, self.settlement_ms)

    @cached_property
    def amount_horizons(self) -> tuple[int, ...]:
        return (*self.order_horizons, HOUR_MS, DAY_MS)

    @cached_property
    def user_at(self) -> tuple[int, ...]:
        return self._at(self.user_horizons)

    @cached_property
    def order_at(self) -> tuple[int, ...]:
        return self._at(self.order_horizons)

    @cached_property
    def amount_at(self) -> tuple[int, ...]:
        return self._at(self.amount_horizons)

    # The spec windows that answer the fixed positions: the 30-day rate window of user payments, of
    # merchant orders and of merchant amounts; the settlement period, trailing hour and day (amounts).
    @cached_property
    def user_rate_i(self) -> int:
        return self.user_at[len(self.windows)]

    @cached_property
    def order_rate_i(self) -> int:
        return self.order_at[len(self.windows)]

    @cached_property
    def amount_fixed_i(self) -> tuple[int, int, int, int]:
        """(30-day rate, settlement, trailing 1 h, trailing 24 h) windows of merchant amounts."""
        n = len(self.windows)
        rate, settle, hour, day = self.amount_at[n : n + 4]
        return rate, settle, hour, day

    @cached_property
    def user_payments(self) -> WindowSpec:
        return self._spec(self.user_horizons, ("merchant", "device"), track_max=True)

    @cached_property
    def rate_only(self) -> WindowSpec:
        return self._spec((RATE_HORIZON_MS,))

    @cached_property
    def merchant_orders(self) -> WindowSpec:
        return self._spec(self.order_horizons, ("buyer",))

    @cached_property
    def merchant_amounts(self) -> WindowSpec:
        return self._spec(self.amount_horizons)

    @cached_property
    def settlement_only(self) -> WindowSpec:
        return self._spec((self.settlement_ms,))


# (ts, value, cats) of one held event, as `rebuild` takes them; cats may be any sequence.
SeriesEvent = tuple[int, int, Sequence[str]]


def _rate(num: float, den: float) -> float:
    return num / den if den else 0.0


class _EntityBase:
    __slots__ = ("cfg", "late_events", "latest", "too_old_events")

    # Series code -> attribute holding its SlidingWindows. Codes not listed feed no window but
    # still move the entity's clock (`latest`), both in `apply` and in `rebuild`.
    SERIES: ClassVar[Mapping[int, str]] = {}

    def __init__(self, cfg: WindowConfig) -> None:
        self.cfg = cfg
        self.latest = -1
        self.late_events = 0
        self.too_old_events = 0

    def apply(self, ev: HeldEvent) -> None:
        """Add one event to its series' window (incremental path)."""
        name = self.SERIES.get(ev.series)
        if name is not None:
            self._add(getattr(self, name), ev.ts, ev.value, ev.cats)
        elif ev.ts > self.latest:  # e.g. cancelled orders: they move the clock only
            self.latest = ev.ts

    def rebuild(self, events_by_series: Mapping[int, Sequence[SeriesEvent]], end: int) -> None:
        """Replace every series window by one built in bulk from its held events.

        `events_by_series` maps a series code to its events in arrival order; `end` is the
        newest event time over all held events (of any series). The result has the same
        features as `apply` of the same events in any order, with every window advanced to
        `end`. Late/too-old counters restart at 0.
        """
        self.latest = end
        self.late_events = 0
        self.too_old_events = 0
        for series, name in self.SERIES.items():
            spec = getattr(self, name).spec
            evs = events_by_series.get(series, ())
            setattr(self, name, SlidingWindows.from_events(spec, evs, end))

    def _add(self, w: SlidingWindows, ts: int, value: int, cats: tuple[str, ...] = ()) -> None:
        if ts > self.latest:
            self.latest = ts
        path = w.add(ts, value, cats)
        if path is AddPath.LATE_SLOW:
            self.late_events += 1
        elif path is AddPath.TOO_OLD:
            self.too_old_events += 1


class UserState(_EntityBase):
    """A user's payments (amount; merchant and device), chargebacks and repayments."""

    __slots__ = ("chargebacks", "payments", "repayments")

    SERIES: ClassVar[Mapping[int, str]] = {
        U_PAYMENT: "payments",
        U_CHARGEBACK: "chargebacks",
        U_REPAYMENT: "repayments",
    }

    def __init__(self, cfg: WindowConfig) -> None:
        super().__init__(cfg)
        self.payments = SlidingWindows(cfg.user_payments)
        self.chargebacks = SlidingWindows(cfg.rate_only)
        self.repayments = SlidingWindows(cfg.rate_only)  # value 1 = on time

    def device_is_new(self, device: str, ts: int) -> bool:
        """True when a payment at `ts` comes from a device the user has not paid from in the
        30 days before, while the user did pay in that period (a first-ever payment is not
        "new device"). Call before the payment is applied."""
        if not device:  # no device_id on the payment
            return False
        p = self.payments
        if p.count(self.cfg.user_rate_i) == 0:
            return False
        seen = p.last_seen(1, device)
        return seen is None or seen <= ts - RATE_HORIZON_MS

    def amount_zscore(self, ts: int, amount: int) -> float:
        """How far `amount` lies above the user's other payments of the last 30 days, in
        standard deviations. Call after the payment is applied. 0 with fewer than
        `ZSCORE_MIN_HISTORY` other payments; the deviation is floored (see ZSCORE_STD_FLOOR)
        so a user who always pays the same amount does not get an infinite score."""
        p = self.payments
        i = self.cfg.user_rate_i
        if ts <= (p.end or ts) - RATE_HORIZON_MS:
            return 0.0  # too old to be in the 30-day window
        n = p.count(i) - 1
        if n < ZSCORE_MIN_HISTORY:
            return 0.0
        s = p.sum(i) - amount
        mean = s / n
        var = max(0.0, (p.sum_sq(i) - amount * amount) / n - mean * mean)
        std = max(math.sqrt(var), ZSCORE_STD_FLOOR * mean, 100.0)  # 100 minor units = 1.00
        return (amount - mean) / std

    def features(self) -> dict[str, float]:
        end = self.latest
        p, cb, rp = self.payments, self.chargebacks, self.repayments
        p.advance(end)
        cb.advance(end)
        rp.advance(end)
        out: dict[str, float] = {}
        merchants, devices = p.distincts(0), p.distincts(1)
        cfg = self.cfg
        for i, (k_n, k_sum, k_mean, k_std, k_max, k_merchants, k_devices) in zip(
            cfg.user_at, cfg.user_keys, strict=False  # the rate window after them is read below
        ):
            n, total, mean, std = p.moments(i)
            out[k_n] = n
            out[k_sum] = total / 100
            out[k_mean] = mean / 100 if n else 0.0
            out[k_std] = std / 100 if n > 1 else 0.0
            out[k_max] = (p.max(i) or 0) / 100 if n else 0.0
            out[k_merchants] = merchants[i]
            out[k_devices] = devices[i]
        n_cb = cb.count(0)
        out["chargeback_count_30d"] = n_cb
        out["chargeback_rate_30d"] = _rate(n_cb, p.count(cfg.user_rate_i))
        out["repayment_on_time_rate_30d"] = _rate(rp.sum(0), rp.count(0))
        return out


class MerchantState(_EntityBase):
    """A merchant's order lifecycle, the payments and chargebacks at it, and its repayments."""

    __slots__ = (
        "_features", "chargebacks", "fulfilled", "payments", "placed", "refunded", "repayments",
        "settled_refunds",
    )

    # M_CANCELLED is deliberately absent: cancelled orders move the clock but feed no feature.
    SERIES: ClassVar[Mapping[int, str]] = {
        M_PLACED: "placed",
        M_FULFILLED: "fulfilled",
        M_REFUNDED: "refunded",
        M_PAYMENT: "payments",
        M_CHARGEBACK: "chargebacks",
        M_REPAYMENT: "repayments",
        M_SETTLED_REFUND: "settled_refunds",
    }

    def __init__(self, cfg: WindowConfig) -> None:
        super().__init__(cfg)
        self.settled_refunds = SlidingWindows(cfg.settlement_only)  # at their order's fulfilment time
        self.placed = SlidingWindows(cfg.merchant_orders)  # category: buyer
        self.fulfilled = SlidingWindows(cfg.merchant_amounts)
        self.refunded = SlidingWindows(cfg.merchant_amounts)
        self.payments = SlidingWindows(cfg.merchant_amounts)
        self.chargebacks = SlidingWindows(cfg.rate_only)
        self.repayments = SlidingWindows(cfg.rate_only)
        # features() until the next event or take_features(): the owner reads them after every event
        # (merchant rules) and again for the merchant's summary, most often with no event between.
        self._features: dict[str, float] | None = None

    def apply(self, ev: HeldEvent) -> None:
        self._features = None
        if ev.series == M_SETTLED_REFUND:  # back-dated by design, so not counted as a late event
            self.settled_refunds.add(ev.ts, ev.value)
            return
        super().apply(ev)

    def rebuild(self, events_by_series: Mapping[int, Sequence[SeriesEvent]], end: int) -> None:
        self._features = None
        super().rebuild(events_by_series, end)

    def take_features(self) -> dict[str, float]:
        """features(), no longer kept (for their last reader before the next event: the summary)."""
        out = self.features()
        self._features = None
        return out

    def features(self) -> dict[str, float]:
        """The merchant's features at its latest event; the same dict until its next event, so
        callers read it and never change it."""
        if self._features is not None:
            return self._features
        end = self.latest
        for w in (self.placed, self.fulfilled, self.refunded, self.payments, self.chargebacks):
            w.advance(end)
        out: dict[str, float] = {}
        # Every window's aggregates in one call per series (one call per feature cost a third more).
        orders, order_sums, buyers = self.placed.counts(), self.placed.sums(), self.placed.distincts(0)
        refunds, fulfilled, payments = self.refunded.counts(), self.fulfilled.sums(), self.payments.counts()
        cfg = self.cfg
        # Order counts and sums come from the orders' windows (o), the rest from the amounts' (a).
        for o, a, (k_n, k_sum, k_fulfilled, k_refunds, k_rate, k_buyers, k_payments) in zip(
            cfg.order_at, cfg.amount_at, cfg.merchant_keys, strict=False  # the fixed ones: below
        ):
            out[k_n] = orders[o]
            out[k_sum] = order_sums[o] / 100
            out[k_fulfilled] = fulfilled[a] / 100
            out[k_refunds] = refunds[a]
            out[k_rate] = _rate(refunds[a], orders[o])
            out[k_buyers] = buyers[o]
            out[k_payments] = payments[a]
        rate_i, settle_i, hour_i, _ = cfg.amount_fixed_i
        n_cb = self.chargebacks.count(0)
        out["chargeback_count_30d"] = n_cb
        out["chargeback_rate_30d"] = _rate(n_cb, payments[rate_i])
        out["receivables"] = self._receivables(settle_i) / 100
        hourly_mean_30d = fulfilled[rate_i] / (RATE_HORIZON_MS / HOUR_MS)
        out["sales_velocity_1h"] = _rate(fulfilled[hour_i], hourly_mean_30d)
        self._features = out
        return out

    def _receivables(self, settle_i: int) -> int:
        """Fulfilled value in the settlement period less the refunds on those orders (minor units)."""
        self.settled_refunds.advance(self.latest)
        return max(0, self.fulfilled.sum(settle_i) - self.settled_refunds.sum(0))

    def chargebacks_30d(self) -> int:
        """chargeback_count_30d, without the other features (a chargeback spike reads it)."""
        self.chargebacks.advance(self.latest)
        return self.chargebacks.count(0)

    def credit_inputs(self) -> tuple[int, float, float, int, int]:
        """What the credit line reads (credit/merchant.py LineInputs): receivables, 30-day refund and
        chargeback rates, fulfilled value in the last 24 h and 30 days. Cheaper than features()."""
        end = self.latest
        rate_i, settle_i, _, day_i = self.cfg.amount_fixed_i
        f, refunded, chargebacks = self.fulfilled, self.refunded, self.chargebacks
        f.advance(end)
        refunded.advance(end)
        chargebacks.advance(end)
        # A rate with no numerator needs no denominator: skip advancing it (most merchants, most days).
        refunds, cbs = refunded.count(rate_i), chargebacks.count(0)
        if refunds:
            self.placed.advance(end)
        if cbs:
            self.payments.advance(end)
        return (
            self._receivables(settle_i),
            _rate(refunds, self.placed.count(self.cfg.order_rate_i)) if refunds else 0.0,
            _rate(cbs, self.payments.count(rate_i)) if cbs else 0.0,
            f.sum(day_i),
            f.sum(rate_i),
        )
