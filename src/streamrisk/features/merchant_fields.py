"""A few of a merchant's features, read straight from its windows.

The merchant rules read a handful of the merchant's ~30 features after every merchant event (most of
them forwarded payments); building the whole dict each time was most of what those rules cost. A
reader computes only the named features, each with the formula `MerchantState.features()` uses, so
the values are the same (tests/features/test_merchant_fields.py compares them).
"""

from __future__ import annotations

from collections.abc import Callable

from .entities import HOUR_MS, RATE_HORIZON_MS, MerchantState, WindowConfig, _rate

Reader = Callable[[MerchantState], float]


def _readers(cfg: WindowConfig) -> dict[str, Reader]:
    """Feature name -> how `MerchantState.features()` computes it, from one window."""
    out: dict[str, Reader] = {}
    for o, a, (k_n, k_sum, k_fulfilled, k_refunds, k_rate, k_buyers, k_payments) in zip(
        cfg.order_at, cfg.amount_at, cfg.merchant_keys, strict=False
    ):
        out[k_n] = lambda m, o=o: m.placed.count(o)
        out[k_sum] = lambda m, o=o: m.placed.sum(o) / 100
        out[k_fulfilled] = lambda m, a=a: m.fulfilled.sum(a) / 100
        out[k_refunds] = lambda m, a=a: m.refunded.count(a)
        out[k_rate] = lambda m, o=o, a=a: _rate(m.refunded.count(a), m.placed.count(o))
        out[k_buyers] = lambda m, o=o: m.placed.distinct(o, 0)
        out[k_payments] = lambda m, a=a: m.payments.count(a)
    rate_i, settle_i, hour_i, _ = cfg.amount_fixed_i
    hours_30d = RATE_HORIZON_MS / HOUR_MS
    out["chargeback_count_30d"] = lambda m: m.chargebacks.count(0)
    out["chargeback_rate_30d"] = lambda m: _rate(m.chargebacks.count(0), m.payments.count(rate_i))
    out["receivables"] = lambda m: m.receivables(settle_i) / 100
    out["sales_velocity_1h"] = lambda m: _rate(m.fulfilled.sum(hour_i), m.fulfilled.sum(rate_i) / hours_30d)
    return out


class MerchantFields:
    """Reads the features `names` (those that exist: `features().get` of the others is None too)."""

    def __init__(self, cfg: WindowConfig, names: tuple[str, ...]) -> None:
        self.names = names
        readers = _readers(cfg)
        self._readers = tuple((n, readers[n]) for n in dict.fromkeys(names) if n in readers)

    def read(self, merchant: MerchantState) -> dict[str, float]:
        """The named features at the merchant's latest event. Every series is advanced first, as
        `features()` does, so the windows end in the same state whichever of the two read them."""
        merchant.advance()
        return {name: read(merchant) for name, read in self._readers}
