"""The worked example of docs/credit.md ("A worked example"), number for number, through
the processor with the shipped policy and ruleset."""

from __future__ import annotations

from streamrisk.loadgen import patterns as pt
from tests.pipeline import Pipeline

from .conftest import DAY, T0

H, M = DAY // 24, 60_000
NOW = T0 + 40 * DAY


def user_story() -> list[pt.Record]:
    u = "u-ex"

    def pay(eid: str, amount: float, day: float, method: str = "credit_line") -> pt.Record:
        return pt.payment(eid, u, "shop", amount, T0 + int(day * DAY), method=method)

    return [
        pay("ex-p1", 800.0, 0),
        *(pt.repayment(f"ex-r{d}", u, 200.0, T0 + d * DAY, T0 + 5 * DAY) for d in (1, 2, 3)),
        pay("ex-p2", 100.0, 7),
        pay("ex-p3", 2500.0, 9),
        pt.repayment("ex-r10", u, 100.0, T0 + 10 * DAY, T0 + 8 * DAY),  # two days late
        pay("ex-p4", 50.0, 14, method="card"),
    ]


def merchant_story() -> list[pt.Record]:
    m = "m-ex"
    d31 = T0 + 31 * DAY
    return [
        pt.order("A:placed", m, "b1", 1000.0, T0),
        pt.order("A:fulfilled", m, "b1", 1000.0, T0 + M, status="fulfilled"),
        pt.order("B:placed", m, "b2", 3000.0, d31),
        *(pt.order(f"C{i}:placed", m, f"c{i}", 50.0, d31 + i * M) for i in range(1, 10)),
        pt.order("B:fulfilled", m, "b2", 3000.0, d31 + 10 * M, status="fulfilled"),
        pt.order("A:refunded", m, "b1", 1000.0, d31 + 6 * H, status="refunded"),
        pt.repayment("m-ex-r1", m, 500.0, T0 + 32 * DAY, d31, account_type="merchant"),
        pt.order("B:refunded", m, "b2", 1000.0, T0 + 33 * DAY, status="refunded"),
    ]


def test_worked_example_user() -> None:
    pipe = Pipeline()
    pipe.run(user_story(), NOW, batch=1)
    d = {x["event_id"]: x for x in pipe.records("risk-decisions")}
    assert [d[e]["action"] for e in ("ex-p1", "ex-p2", "ex-p3", "ex-p4")] == ["approve", "approve", "decline",
                                                                              "approve"]
    assert d["ex-p3"]["reasons"] == ["OVER_LIMIT"]
    got = [(a["previous_limit"], a["new_limit"], a["reasons"], (a["ts"] - T0) / DAY)
           for a in pipe.records("credit-limit-adjustments")]
    assert got == [(2000.0, 2400.0, ["ON_TIME_REPAYMENTS"], 7.0),
                   (2400.0, 1920.0, ["REPAYMENT_PAST_DUE"], 10.0)]  # at the late repayment itself
    view = pipe.proc.credit.user_view("u-ex")
    got = (view["credit_limit"], view["credit_outstanding"], view["credit_available"])
    assert got == (1920.0, 200.0, 1720.0)


def test_worked_example_merchant() -> None:
    pipe = Pipeline()
    pipe.run(merchant_story(), NOW, batch=1)
    got = [(a["previous_line"], a["new_line"], a["reasons"]) for a in pipe.records("credit-line-adjustments")]
    assert got == [
        (0.0, 800.0, ["RECEIVABLES"]),
        (800.0, 2400.0, ["RECEIVABLES"]),
        (2400.0, 1920.0, ["REFUND_RATE"]),
        (1920.0, 1680.0, ["LATE_REPAYMENTS", "REFUND_RATE"]),
        (1680.0, 420.0, ["LATE_REPAYMENTS", "REFUND_RATE", "SALES_DECLINE"]),
    ]
    view = pipe.proc.credit.merchant_view("m-ex", pipe.proc.merchants.get("m-ex"))
    assert (view["credit_line"], view["receivables"], view["advance_rate"]) == (420.0, 2000.0, 0.7)
