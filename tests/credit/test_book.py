"""Credit through the processor (a whole deployment in one process, no broker): decisions that read
the account, adjustments on the contract topics, the API's view, receivables by order."""

from __future__ import annotations

from streamrisk.credit import credit_book, load_policy
from streamrisk.loadgen import patterns as pt
from streamrisk.settings import Settings
from tests.pipeline import Pipeline

from .conftest import DAY, T0, policy_mapping

HOUR = DAY // 24
NOW = T0 + 60 * DAY


def credit_payment(eid: str, user: str, amount: float, ts: int, merchant: str = "shop") -> pt.Record:
    return pt.payment(eid, user, merchant, amount, ts, method="credit_line")


def decisions(pipe: Pipeline) -> dict[str, dict]:
    return {d["event_id"]: d for d in pipe.records("risk-decisions")}


def test_over_limit_credit_payment_is_declined_and_draws_nothing() -> None:
    pipe = Pipeline()
    pipe.run([
        credit_payment("p1", "u1", 2500.0, T0),  # the initial limit is 2000.00
        credit_payment("p2", "u1", 1500.0, T0 + HOUR),
        credit_payment("p3", "u1", 600.0, T0 + 2 * HOUR),
        pt.payment("p4", "u1", "shop", 3000.0, T0 + 3 * HOUR),  # a card payment: no credit
    ], NOW)
    d = decisions(pipe)
    assert (d["p1"]["action"], d["p1"]["reasons"]) == ("decline", ["OVER_LIMIT"])
    assert d["p2"]["action"] == "approve"
    assert (d["p3"]["action"], d["p3"]["reasons"]) == ("decline", ["OVER_LIMIT"])
    assert "OVER_LIMIT" not in d["p4"]["reasons"]
    view = pipe.proc.credit.user_view("u1")
    got = (view["credit_limit"], view["credit_outstanding"], view["credit_available"])
    assert got == (2000.0, 1500.0, 500.0)


def test_repayment_restores_availability() -> None:
    pipe = Pipeline()
    pipe.run([credit_payment("p1", "u1", 1800.0, T0),
              pt.repayment("r1", "u1", 1000.0, T0 + DAY, T0 + 5 * DAY)], NOW)
    assert pipe.proc.credit.user_view("u1")["credit_available"] == 1200.0
    pipe.run([credit_payment("p2", "u1", 1100.0, T0 + 2 * DAY)], NOW)
    assert decisions(pipe)["p2"]["action"] == "approve"


def test_chargeback_reverses_a_credit_line_draw() -> None:
    pipe = Pipeline()
    pipe.run([credit_payment("p1", "u1", 1200.0, T0), credit_payment("p2", "u1", 300.0, T0 + HOUR)], NOW)
    pipe.run([pt.chargeback("c1", "p1", "u1", "shop", 1200.0, T0 + 3 * DAY, reason="not_received")], NOW)
    view = pipe.proc.credit.user_view("u1")
    assert (view["credit_outstanding"], view["credit_available"]) == (300.0, 1700.0)
    assert pipe.proc.stats()["draws_reversed"] == 1


def test_velocity_burst_freezes_the_limit_with_one_adjustment() -> None:
    pipe = Pipeline()
    pipe.run([credit_payment("p0", "u1", 400.0, T0 - DAY)], NOW)
    pipe.run(pt.velocity_burst("u1", T0), NOW)
    adjustments = pipe.records("credit-limit-adjustments")
    assert len(adjustments) == 1
    a = adjustments[0]
    got = (a["previous_limit"], a["new_limit"], a["reasons"])
    assert got == (2000.0, 400.0, ["FRAUD_FREEZE", "VELOCITY_5M"])
    view = pipe.proc.credit.user_view("u1")
    assert (view["credit_status"], view["credit_available"]) == ("frozen", 0.0)
    assert view["credit_adjustments"][0]["new_limit"] == 400.0


def test_receivables_ignore_a_refund_of_an_order_fulfilled_before_the_period() -> None:
    pipe = Pipeline()
    pipe.run([
        pt.order("old:placed", "m1", "b1", 1000.0, T0),
        pt.order("old:fulfilled", "m1", "b1", 1000.0, T0 + HOUR, status="fulfilled"),
        pt.order("new:placed", "m1", "b2", 3000.0, T0 + 35 * DAY),
        pt.order("new:fulfilled", "m1", "b2", 3000.0, T0 + 35 * DAY + HOUR, status="fulfilled"),
        pt.order("old:refunded", "m1", "b1", 1000.0, T0 + 36 * DAY, status="refunded"),
    ], NOW)
    features = pipe.proc.merchants.get("m1").features()
    assert features["receivables"] == 3000.0  # the old order's refund does not count
    assert pipe.proc.credit.merchant_view("m1", pipe.proc.merchants.get("m1"))["receivables"] == 3000.0
    pipe.run([pt.order("new:refunded", "m1", "b2", 500.0, T0 + 36 * DAY + HOUR, status="refunded")], NOW)
    assert pipe.proc.merchants.get("m1").features()["receivables"] == 2500.0
    # The refund leaves the settlement window with its order, not 30 days after the refund.
    pipe.run([pt.order("late:placed", "m1", "b3", 10.0, T0 + 65 * DAY + 2 * HOUR)], T0 + 66 * DAY)
    assert pipe.proc.merchants.get("m1").features()["receivables"] == 0.0


def test_merchant_line_is_cut_on_bust_out(tmp_path) -> None:
    import yaml

    # Without the chargeback penalty, which would already take the line to 0 on its own here.
    raw = policy_mapping()
    raw["merchant"]["chargeback_penalty"] = 0.0
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    pipe = Pipeline(Settings(credit_policy_path=path))
    pipe.run(pt.bust_out("m-bust", NOW), NOW + HOUR)
    lines = [a for a in pipe.records("credit-line-adjustments") if a["merchant_id"] == "m-bust"]
    assert lines[-1]["new_line"] == 0.0
    assert "MERCHANT_FRAUD_ALERT" in lines[-1]["reasons"]
    assert lines[-2]["new_line"] > 0
    # Held: more sales during the hold do not raise the line again.
    after = "m-bust:after"
    pipe.run([pt.order(f"{after}:placed", "m-bust", "b", 900.0, NOW + 30 * 60_000),
              pt.order(f"{after}:fulfilled", "m-bust", "b", 900.0, NOW + 31 * 60_000, status="fulfilled")],
             NOW + HOUR)
    assert pipe.proc.credit.merchant_view("m-bust", None)["credit_line"] == 0.0


def test_surge_then_collapse_cuts_the_line_on_the_sales_trend() -> None:
    pipe = Pipeline()
    pipe.run(pt.surge_then_collapse("m-sc", NOW), NOW)
    lines = pipe.records("credit-line-adjustments")
    assert max(a["new_line"] for a in lines) > lines[-1]["new_line"]
    assert "SALES_DECLINE" in lines[-1]["reasons"]


def test_on_time_and_late_repayers_are_raised_and_cut() -> None:
    pipe = Pipeline()
    pipe.run(pt.on_time_repayer("u-good", NOW) + pt.late_repayer("u-late", NOW), NOW)
    by_user: dict[str, list[dict]] = {}
    for a in pipe.records("credit-limit-adjustments"):
        by_user.setdefault(a["user_id"], []).append(a)
    assert {tuple(a["reasons"]) for a in by_user["u-good"]} == {("ON_TIME_REPAYMENTS",)}
    assert all(a["new_limit"] > a["previous_limit"] for a in by_user["u-good"])
    assert {tuple(a["reasons"]) for a in by_user["u-late"]} == {("REPAYMENT_PAST_DUE",)}
    assert by_user["u-late"][-1]["new_limit"] == 500.0  # the floor


def test_replay_in_other_batches_gives_the_same_adjustments() -> None:
    records = (pt.on_time_repayer("u-good", NOW) + pt.late_repayer("u-late", NOW)
               + pt.surge_then_collapse("m-sc", NOW) + pt.velocity_burst("u-fast", NOW))
    records.sort(key=lambda r: r[2]["ts"])
    runs = []
    for batch in (1, 7, 500):
        pipe = Pipeline()
        pipe.run(records, NOW, batch=batch)
        topics = ("credit-limit-adjustments", "credit-line-adjustments")
        runs.append([a for t in topics for a in pipe.records(t)])
    assert runs[0] == runs[1] == runs[2]
    ids = [a["adjustment_id"] for a in runs[0]]
    assert len(ids) == len(set(ids)) > 5


def test_a_duplicate_event_makes_no_second_adjustment() -> None:
    pipe = Pipeline()
    records = pt.late_repayer("u-late", NOW)
    pipe.run(records, NOW)
    first = pipe.records("credit-limit-adjustments")
    pipe.run(records, NOW)  # a producer retrying everything
    assert pipe.records("credit-limit-adjustments") == first


def test_a_policy_file_is_read_from_the_settings(tmp_path) -> None:
    import yaml

    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy_mapping(initial_limit=700.0) | {"version": "mine-1"}))
    book = credit_book(Settings(credit_policy_path=path), {}, None, 30 * DAY)  # type: ignore[arg-type]
    assert (book.policy.version, book.policy.user.initial_limit) == ("mine-1", 70_000)
    assert credit_book(Settings(credit_enabled=False), {}, None, 0) is None  # type: ignore[arg-type]


def test_a_broken_policy_names_every_problem() -> None:
    import pytest

    from streamrisk.credit import PolicyError

    raw = policy_mapping(floor=900.0, ceiling=500.0, cut_alert_severity="severe")
    raw["merchant"]["band"] = 3
    with pytest.raises(PolicyError) as err:
        load_policy(raw)
    msg = str(err.value)
    for needle in ("user.floor (900.0) must not exceed user.ceiling (500.0)",
                   "user.cut_alert_severity must be one of low, medium, high",
                   "merchant: unknown key(s) ['band']"):
        assert needle in msg
