"""Risk-based pricing over plain data: an account's probability of default (PD) from a logistic model over
its credit features, and its price (annual, basis points) from the policy's table of PD bands.

    pd       = 1 / (1 + exp(-(intercept + sum(weight_f x feature_f))))   rounded to PD_DIGITS
    price_bp = the price of the first band whose max_pd >= pd

The features are read from what the accounts already keep (`pd_features` in user.py and merchant.py;
their names and signs are here), so pricing adds nothing to the state: a PD is a pure function of the
account (and, for a merchant, of its 30-day rates and the event time), computed when an adjustment is
emitted, when the API reads an account, and when the book writes an account (for the expected-loss
gauges), never per payment.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Final

PD_DIGITS: Final = 4  # pd is published to 1/10 000 (one basis point of probability)

#: The user model's features, and the sign a weight must have (+1: more of it is riskier, -1: safer),
#: so that, e.g., more late repayments never lower a PD.
USER_FEATURES: Final = {
    "utilization": 1,  # outstanding / limit (1 at a zero limit), capped at 2
    "on_time_repayments": -1,  # on-time user repayments in the look-back
    "bad_signals": 1,  # late repayments, chargebacks, fraud alerts and freezes in the look-back
    "frozen": 1,  # 1 while the limit is frozen
}
MERCHANT_FEATURES: Final = {
    "late_repayments": 1,  # advance-rate steps lost to late merchant repayments, net of on-time ones
    "refund_rate_30d": 1,
    "chargeback_rate_30d": 1,
    "recent_chargebacks": 1,  # chargebacks in the spike window (24 h shipped)
    "held": 1,  # 1 while a fraud alert or a chargeback spike holds the line cut
}


@dataclass(frozen=True, slots=True)
class Model:
    intercept: float
    weights: tuple[tuple[str, float], ...]  # (feature, weight); features left out weigh 0

    def pd(self, features: dict[str, float]) -> float:
        z = self.intercept
        for f, w in self.weights:  # a loop, not sum(<generator>): this runs at every account write
            z += w * features[f]
        # exp(-z) overflows past z ~ -709; the PD there is 0 at any published precision.
        return round(1.0 / (1.0 + math.exp(-z)), PD_DIGITS) if z > -700 else 0.0


@dataclass(frozen=True, slots=True)
class Pricing:
    """The policy's `pricing:` section (policy.py validates it)."""

    user: Model
    merchant: Model
    band_max_pd: tuple[float, ...]  # increasing, the last 1.0
    band_price_bp: tuple[int, ...]  # non-decreasing: a riskier band never costs less
    lgd: float  # loss given default, 0..1, for the expected loss
    horizon_days: int  # what `pd` is the probability of default over (documentation and labels)
    fitted: str = ""  # how the weights were set: "" hand-set, else what fitted them

    def band(self, pd: float) -> int:
        """Index of the band `pd` (rounded) falls in."""
        return min(bisect.bisect_left(self.band_max_pd, pd), len(self.band_max_pd) - 1)

    def price_bp(self, pd: float) -> int:
        return self.band_price_bp[self.band(pd)]

    def band_label(self, i: int) -> str:
        """The band's label in /metrics: its PD range, e.g. "0.01-0.03"."""
        i = min(i, len(self.band_max_pd) - 1)  # a band kept under a policy with more bands (a backtest's)
        lo = self.band_max_pd[i - 1] if i else 0.0
        return f"{lo:g}-{self.band_max_pd[i]:g}"


#: The shipped pricing (default_policy.yaml's `pricing:`), also what a policy file without a `pricing:`
#: section gets. Hand-set, not fitted: docs/credit.md, "Risk-based pricing".
DEFAULT_PRICING: Final = {
    "horizon_days": 365,
    "lgd": 0.6,
    "user": {"intercept": -4.8, "weights": {"utilization": 1.5, "on_time_repayments": -0.25,
                                            "bad_signals": 0.9, "frozen": 2.5}},
    "merchant": {"intercept": -5.0, "weights": {"late_repayments": 0.7, "refund_rate_30d": 3.0,
                                                "chargeback_rate_30d": 40.0, "recent_chargebacks": 0.2,
                                                "held": 3.0}},
    "bands": [
        {"max_pd": 0.01, "price_bp": 900},
        {"max_pd": 0.03, "price_bp": 1400},
        {"max_pd": 0.08, "price_bp": 2200},
        {"max_pd": 0.2, "price_bp": 3500},
        {"max_pd": 1.0, "price_bp": 6000},
    ],
}
