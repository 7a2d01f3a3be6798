"""What people see of credit: the demo summary's counts of adjustments read back from the topics."""

from __future__ import annotations

import orjson

from streamrisk.credit.report import CreditWatch


def test_demo_summary_counts_adjustments_of_both_kinds_by_reason() -> None:
    w = CreditWatch(prefix="p.")
    limit = [{"previous_limit": 2000.0, "new_limit": 2400.0, "reasons": ["ON_TIME_REPAYMENTS"]},
             {"previous_limit": 2000.0, "new_limit": 0.0, "reasons": ["FRAUD_FREEZE", "VELOCITY_5M"]}]
    line = [{"previous_line": 0.0, "new_line": 80.0, "reasons": ["RECEIVABLES"]}]
    assert w.take("p.credit-limit-adjustments", (orjson.dumps(a) for a in limit))
    assert w.take("p.credit-line-adjustments", (orjson.dumps(a) for a in line))
    assert not w.take("p.risk-decisions", [b"{}"])
    assert w.summary_lines() == [
        "  limit adjustments   1 up, 1 down; ON_TIME_REPAYMENTS=1, FRAUD_FREEZE=1, VELOCITY_5M=1",
        "  line adjustments    1; RECEIVABLES=1",
    ]
