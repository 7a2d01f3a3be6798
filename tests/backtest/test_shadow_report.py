"""`streamrisk shadow-report`'s comparison: shadow records carry both sides; chargebacks label them."""

from __future__ import annotations

from streamrisk.backtest.report import format_report
from streamrisk.backtest.shadow_report import build_comparison


def shadow(eid: str, action: str, live: str, version: str = "s1", ts: int = 1000, **kw: object) -> dict:
    reasons = kw.get("reasons", ["BIG"] if action != "approve" else [])
    return {"event_id": eid, "user_id": "u", "merchant_id": "m", "amount": 10.0, "ts": ts,
            "action": action, "reasons": reasons, "rules_version": version,
            "live_action": live, "live_reasons": [], "live_rules_version": "l1"}


def test_report_compares_the_newest_shadow_counting_each_payment_once_with_chargebacks() -> None:
    records = [
        shadow("old", "decline", "approve", version="s0"),  # an earlier shadow: not this report
        shadow("p1", "decline", "approve"),
        shadow("p2", "approve", "approve"),
        shadow("p3", "review", "approve"),
        shadow("p1", "decline", "approve"),  # decided again after a restart
    ]
    c = build_comparison(records, [{"payment_id": "p1"}, {"payment_id": "p2"}, {"payment_id": "gone"}])
    assert (c.a.version, c.b.version, c.compared, c.changed) == ("l1", "s1", 3, 2)
    assert c.transitions == {("approve", "decline"): 1, ("approve", "approve"): 1, ("approve", "review"): 1}
    q = c.quality(c.b)
    assert (q["decline"].flagged, q["decline"].true_positives, q["decline"].frauds) == (1, 1, 2)
    assert q["review or decline"].precision == 0.5
    assert c.quality(c.a)["decline"].recall == 0.0
    assert c.unmatched_chargebacks == 1
    text = format_report(c, labels=("live", "shadow"))
    assert "payments whose action changed: 2 of 3" in text and "approve -> decline: 1" in text


def test_report_keeps_only_payments_of_the_period() -> None:
    records = [shadow("early", "decline", "approve", ts=1000), shadow("late", "decline", "approve", ts=5000)]
    c = build_comparison(records, [], since_ts=2000)
    assert c.decided == {"late"}
