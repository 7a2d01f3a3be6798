"""Brute-force features over the records that were sent: what GET /users/{id} and /merchants/{id}
must answer once every record was processed exactly once. No windows engine, no state: each feature is
recomputed from the plain list of an entity's events, like tests/windows/oracle.py does for one window.

Only the features whose meaning the contract states plainly are computed; `compare` checks those.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from streamrisk.loadgen.synthetic import Record

WINDOWS = {"5m": 300_000, "1h": 3_600_000, "24h": 86_400_000, "30d": 30 * 86_400_000}


def _minor(amount: float) -> int:
    return round(amount * 100)


class FeatureOracle:
    """Collects sent records; answers the expected features of each user and merchant."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()  # (topic, event_id): a duplicate has no second effect
        self.user_clock: dict[str, int] = {}
        self.merchant_clock: dict[str, int] = {}
        self.user_payments: dict[str, list[tuple[int, int, str, str]]] = defaultdict(list)
        self.user_chargebacks: dict[str, list[int]] = defaultdict(list)
        self.merchant_orders: dict[str, list[tuple[int, int, str]]] = defaultdict(list)  # placed only
        self.merchant_payments: dict[str, list[int]] = defaultdict(list)
        self.merchant_chargebacks: dict[str, list[int]] = defaultdict(list)

    def add(self, rec: Record) -> None:
        v = rec.value
        if (rec.topic, v["event_id"]) in self.seen:
            return
        self.seen.add((rec.topic, v["event_id"]))
        ts = v["ts"]
        if rec.topic == "payments":
            self._tick(self.user_clock, v["user_id"], ts)
            self._tick(self.merchant_clock, v["merchant_id"], ts)
            dev = v.get("device_id") or ""
            self.user_payments[v["user_id"]].append((ts, _minor(v["amount"]), v["merchant_id"], dev))
            self.merchant_payments[v["merchant_id"]].append(ts)
        elif rec.topic == "chargebacks":
            self._tick(self.user_clock, v["user_id"], ts)
            self._tick(self.merchant_clock, v["merchant_id"], ts)
            self.user_chargebacks[v["user_id"]].append(ts)
            self.merchant_chargebacks[v["merchant_id"]].append(ts)
        elif rec.topic == "orders":
            self._tick(self.merchant_clock, v["merchant_id"], ts)
            if v["status"] == "placed":
                self.merchant_orders[v["merchant_id"]].append((ts, _minor(v["amount"]), v["user_id"]))
        elif rec.topic == "repayments":
            clock = self.user_clock if v["account_type"] == "user" else self.merchant_clock
            self._tick(clock, v["account_id"], ts)

    def add_all(self, records: Iterable[Record]) -> None:
        for r in records:
            self.add(r)

    @staticmethod
    def _tick(clock: dict[str, int], key: str, ts: int) -> None:
        if ts > clock.get(key, -1):
            clock[key] = ts

    def user(self, user_id: str) -> dict[str, float]:
        end = self.user_clock[user_id]
        out: dict[str, float] = {}
        for name, h in WINDOWS.items():
            win = [p for p in self.user_payments[user_id] if end - h < p[0] <= end]
            amounts = [p[1] for p in win]
            out[f"payment_count_{name}"] = len(win)
            out[f"payment_amount_sum_{name}"] = sum(amounts) / 100
            out[f"payment_amount_mean_{name}"] = statistics.fmean(amounts) / 100 if amounts else 0.0
            out[f"payment_amount_std_{name}"] = statistics.pstdev(amounts) / 100 if len(amounts) > 1 else 0.0
            out[f"payment_amount_max_{name}"] = max(amounts) / 100 if amounts else 0.0
            out[f"distinct_merchants_{name}"] = len({p[2] for p in win})
            out[f"distinct_devices_{name}"] = len({p[3] for p in win})
        month = end - WINDOWS["30d"]
        out["chargeback_count_30d"] = sum(month < t <= end for t in self.user_chargebacks[user_id])
        return out

    def merchant(self, merchant_id: str) -> dict[str, float]:
        end = self.merchant_clock[merchant_id]
        out: dict[str, float] = {}
        for name, h in WINDOWS.items():
            win = [o for o in self.merchant_orders[merchant_id] if end - h < o[0] <= end]
            out[f"order_count_{name}"] = len(win)
            out[f"order_amount_sum_{name}"] = sum(o[1] for o in win) / 100
            out[f"distinct_buyers_{name}"] = len({o[2] for o in win})
            payments = self.merchant_payments[merchant_id]
            out[f"payment_count_{name}"] = sum(end - h < t <= end for t in payments)
        out["chargeback_count_30d"] = sum(
            end - WINDOWS["30d"] < t <= end for t in self.merchant_chargebacks[merchant_id]
        )
        return out


def compare(want: dict[str, float], got: dict[str, Any] | None) -> dict[str, tuple[float, Any]]:
    """The features where `got` differs from `want` (all of them when `got` is missing)."""
    if got is None:
        return {k: (v, None) for k, v in want.items()}
    return {
        k: (v, got.get(k))
        for k, v in want.items()
        if not isinstance(got.get(k), int | float) or not math.isclose(v, got[k], rel_tol=1e-9, abs_tol=1e-9)
    }
