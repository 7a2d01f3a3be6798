"""Point-in-time feature export: a recording replayed through the backtest's path (the worker's own core,
`run_backtest`), each payment's score features read from the context it was decided on, at that moment.

A payment's row is taken inside the processor's decision, before any later record of the recording is
applied, so no feature sees an event after the payment (tests/training/test_export.py checks it against
the recording cut right after the payment). The stream's chargebacks and repayments are kept beside the
rows: they are the labels (training/labels.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import orjson

from ..backtest.offline import run_backtest
from ..core.events import Payment
from ..recording.jsonl import Recorded
from ..rules import Ruleset
from ..rules.ruleset import Context
from ..rules.score import ScoreModel
from ..rules.verdict import Verdict
from ..settings import Settings

#: The learned score's features: the hand-set score's thirteen and what the scenarios' fraud leaves in
#: the windows besides (a new account, a merchant whose day outsells its month, refunds, chargebacks).
#: Each is a score weight key (rules/score.py), so the learned weights go into a ruleset unchanged.
FEATURES: Final = (
    "user.payment_count_5m",
    "log1p(user.payment_count_1h)",
    "user.distinct_merchants_5m",
    "user.amount_zscore_30d",
    "user.new_device",
    "log1p(payment.amount)",
    "user.distinct_devices_24h",
    "user.chargeback_count_30d",
    "user.chargeback_rate_30d",
    "user.repayment_on_time_rate_30d",
    "merchant.refund_rate_24h",
    "merchant.chargeback_rate_30d",
    "payment.method == 'credit_line'",
    "log1p(user.payment_count_30d)",
    "log1p(user.payment_amount_mean_5m)",
    "log1p(merchant.order_amount_sum_24h)",
    "log1p(merchant.order_amount_sum_30d)",
    "merchant.chargeback_count_30d",
    "merchant.refund_rate_30d",
    "log1p(merchant.distinct_buyers_24h)",
    "log1p(merchant.sales_velocity_1h)",
    "log1p(merchant.distinct_buyers_30d)",
)

#: The rules' actions, by strictness (verdict.py).
_RANK: Final = {"alert": 0, "review": 1, "decline": 2}


@dataclass(frozen=True, slots=True)
class Chargeback:
    payment_id: str
    reason: str
    ts: int


@dataclass(frozen=True, slots=True)
class AnalystResolution:
    """An analyst's resolution of a review case (core/reviews.py), from the reviews control topic."""

    payment_id: str
    resolution: str  # approve | fraud
    ts: int


#: How a recording names the reviews control topic, `{app_id}-reviews` (its prefix stripped):
#: `streamrisk record payments chargebacks repayments orders streamrisk-reviews ...`.
REVIEWS_SUFFIX: Final = "-reviews"


@dataclass(frozen=True, slots=True)
class Repayment:
    user_id: str
    ts: int
    due_ts: int


@dataclass
class Export:
    """One row per decided payment, in decision order, and the stream's label events."""

    features: tuple[str, ...]
    clip: float
    event_ids: list[str] = field(default_factory=list)
    user_ids: list[str] = field(default_factory=list)
    devices: list[str | None] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    rows: list[list[float]] = field(default_factory=list)
    handset_score: list[float] = field(default_factory=list)  # the live ruleset's score
    live_action: list[str] = field(default_factory=list)  # its verdict (rules and score)
    reasons: list[tuple[str, ...]] = field(default_factory=list)  # the verdict's reason codes
    rule_rank: list[int] = field(default_factory=list)  # what its rules alone said: 0, 1 review, 2 decline
    chargebacks: list[Chargeback] = field(default_factory=list)
    repayments: list[Repayment] = field(default_factory=list)
    resolutions: list[AnalystResolution] = field(default_factory=list)  # analysts' labels
    version: str = ""  # the live ruleset's

    def matrix(self) -> np.ndarray:
        return np.array(self.rows, dtype=np.float64).reshape(len(self.rows), len(self.features))

    def __len__(self) -> int:
        return len(self.event_ids)


class _Capture:
    """The watch of run_backtest: copies what the decision saw, while it is being made."""

    def __init__(self, export: Export) -> None:
        self.export = export
        self.model = ScoreModel(0.0, dict.fromkeys(export.features, 0.0), None, None, export.clip)

    def __call__(self, payment: Payment, ctx: Context, live: Verdict) -> None:
        e = self.export
        e.event_ids.append(payment.event_id)
        e.user_ids.append(payment.user_id)
        e.devices.append(payment.device_id)
        e.methods.append(payment.method)
        e.ts.append(payment.ts)
        # Transformed and clipped exactly as the score will read them live (ScoreModel.values).
        e.rows.append(self.model.values(ctx))
        e.handset_score.append(live.score)
        e.live_action.append(live.action)
        e.reasons.append(live.reasons)
        e.rule_rank.append(max((_RANK[f.action] for f in live.alerts), default=0))
        e.version = live.rules_version


def _label_events(records: Iterable[Recorded], export: Export) -> Iterator[Recorded]:
    """Pass the records on, keeping the chargebacks and user repayments (invalid ones are the
    processor's to dead-letter, and label nothing); keep the analysts' resolutions of a recorded
    reviews topic (`{app_id}-reviews`), which the backtest does not read."""
    for rec in records:
        if rec.topic.endswith(REVIEWS_SUFFIX):
            try:
                v = orjson.loads(rec.value) if rec.value else None
            except orjson.JSONDecodeError:
                v = None
            if (isinstance(v, dict) and isinstance(v.get("payment_id"), str) and type(v.get("ts")) is int
                    and v.get("resolution") in ("approve", "fraud")):
                export.resolutions.append(AnalystResolution(v["payment_id"], v["resolution"], v["ts"]))
            continue
        if rec.topic in ("chargebacks", "repayments") and rec.value:
            try:
                v = orjson.loads(rec.value)
            except orjson.JSONDecodeError:
                v = None
            if isinstance(v, dict) and type(v.get("ts")) is int:
                if rec.topic == "chargebacks":
                    if isinstance(v.get("payment_id"), str) and isinstance(v.get("reason"), str):
                        export.chargebacks.append(Chargeback(v["payment_id"], v["reason"], v["ts"]))
                elif (v.get("account_type") == "user" and isinstance(v.get("account_id"), str)
                      and type(v.get("due_ts")) is int):
                    export.repayments.append(Repayment(v["account_id"], v["ts"], v["due_ts"]))
        yield rec


def export_features(
    records: Iterable[Recorded],
    settings: Settings,
    ruleset: Ruleset,
    features: tuple[str, ...] = FEATURES,
    *,
    batch_max: int = 500,
) -> Export:
    """Replay `records` as `streamrisk backtest` does, deciding with `ruleset` (the hand-set score it
    holds is the one compared with); a row per payment decided, in decision order."""
    export = Export(tuple(features), ruleset.score_model.clip)
    # The ruleset is also its own shadow: the watch runs where a candidate would be decided, and the
    # shadow reuses the live score (same formula), so deciding costs little more than one run.
    run_backtest(_label_events(records, export), settings, ruleset, ruleset, shared=True,
                 batch_max=batch_max, watch=_Capture(export))
    return export
