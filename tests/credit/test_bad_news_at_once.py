"""Bad news acts at once, through the processor (issue 19, item 2): a fraud chargeback, a high alert or
a repayment past due changes the limit in the batch of the event that revealed it, with one adjustment
naming it; a service dispute waits for the review; a replay changes nothing twice. Merchants: a
bust-out alert or a chargeback spike cuts the line at once.

    payments p0..p9 (credit_line, 200.00 each, an hour apart)    limit 2000.00, outstanding 2000.00
    chargeback c-fraud on p4, reason "fraud"      same batch ->   2000.00 -> 1800.00 (frozen, 0 available)
"""

from __future__ import annotations

import orjson
import yaml

from streamrisk.credit import user as uc
from streamrisk.loadgen import patterns as pt
from streamrisk.settings import Settings
from tests.pipeline import Pipeline

from .conftest import DAY, T0, policy_mapping

HOUR = DAY // 24
NOW = T0 + 60 * DAY


def ten_credit_payments(user: str) -> list[pt.Record]:
    return [pt.payment(f"{user}-p{i}", user, "shop", 200.0, T0 + i * HOUR, method="credit_line")
            for i in range(10)]


def limit_adjustments(pipe: Pipeline, outs: list | None = None) -> list[dict]:
    return pipe.records("credit-limit-adjustments", outs)


def one_batch(pipe: Pipeline, record: pt.Record) -> list:
    """`record` alone in one batch of the processor, state written after it; that batch's outputs."""
    outs = pipe.proc.process([pipe.message(*record)], NOW)
    pipe.proc.flush_state()
    pipe.outputs += outs
    return outs


def account_bytes(pipe: Pipeline, user: str) -> bytes | None:
    return pipe.kv.get(b"cu\x1f" + user.encode())


def test_fraud_chargeback_freezes_the_limit_in_the_batch_of_the_chargeback() -> None:
    """The issue's repro: ten 200.00 credit-line payments, then a fraud chargeback on one of them."""
    pipe = Pipeline()
    pipe.run(ten_credit_payments("u1"), NOW)
    assert limit_adjustments(pipe) == []
    assert pipe.proc.credit.user_view("u1")["credit_outstanding"] == 2000.0
    cb = pt.chargeback("c-fraud", "u1-p4", "u1", "shop", 200.0, T0 + 2 * DAY, reason="fraud")
    outs = one_batch(pipe, cb)
    adjustments = limit_adjustments(pipe, outs)
    assert len(adjustments) == 1
    a = adjustments[0]
    assert (a["previous_limit"], a["new_limit"], a["reasons"]) == (2000.0, 1800.0,
                                                                  ["FRAUD_FREEZE", "FRAUD_CHARGEBACK"])
    assert (a["event_id"], a["ts"]) == ("c-fraud", T0 + 2 * DAY)
    view = pipe.proc.credit.user_view("u1")
    assert (view["credit_status"], view["credit_limit"], view["credit_outstanding"],
            view["credit_available"]) == ("frozen", 1800.0, 1800.0, 0.0)
    # Nothing available: the next credit_line payment is declined over the limit.
    pipe.run([pt.payment("u1-p10", "u1", "shop", 10.0, T0 + 2 * DAY + HOUR, method="credit_line")], NOW)
    decision = pipe.records("risk-decisions")[-1]
    assert decision["action"] == "decline" and "OVER_LIMIT" in decision["reasons"]


def test_unauthorized_is_a_fraud_reason_too() -> None:
    pipe = Pipeline()
    pipe.run([*ten_credit_payments("u1"),
              pt.chargeback("c1", "u1-p0", "u1", "shop", 200.0, T0 + DAY, reason="unauthorized")], NOW)
    assert [a["reasons"] for a in limit_adjustments(pipe)] == [["FRAUD_FREEZE", "FRAUD_CHARGEBACK"]]


def test_service_dispute_reverses_the_draw_but_neither_freezes_nor_cuts_at_once() -> None:
    pipe = Pipeline()
    pipe.run([*ten_credit_payments("u1"),
              pt.chargeback("c1", "u1-p4", "u1", "shop", 200.0, T0 + 2 * DAY, reason="not_received")], NOW)
    assert limit_adjustments(pipe) == []
    view = pipe.proc.credit.user_view("u1")
    got = (view["credit_status"], view["credit_limit"], view["credit_available"])
    assert got == ("active", 2000.0, 200.0)
    # It counts at the review: the user's first event 7 days after the account opened.
    pipe.run([pt.payment("u1-card", "u1", "shop", 5.0, T0 + 8 * DAY)], NOW)
    a = limit_adjustments(pipe)
    assert [(x["previous_limit"], x["new_limit"], x["reasons"], x["event_id"]) for x in a] == [
        (2000.0, 1600.0, ["CHARGEBACK_RECEIVED"], "u1-card")]


def test_the_same_chargeback_twice_makes_one_adjustment_and_the_same_state() -> None:
    pipe = Pipeline()
    pipe.run(ten_credit_payments("u1"), NOW)
    cb = pt.chargeback("c-fraud", "u1-p4", "u1", "shop", 200.0, T0 + 2 * DAY, reason="fraud")
    pipe.run([cb, cb], NOW)  # twice in one batch
    state = account_bytes(pipe, "u1")
    pipe.run([cb], NOW)  # and again later: a producer's retry
    assert len(limit_adjustments(pipe)) == 1
    assert account_bytes(pipe, "u1") == state
    assert pipe.proc.credit.user_view("u1")["credit_outstanding"] == 1800.0


def test_a_chargeback_read_again_after_a_crash_repeats_its_adjustment_id_and_freezes_once() -> None:
    """A crash before the batch's state was written: the chargeback is read again (same offset) and
    the adjustment comes again with the same id, so a consumer drops it; the state holds one freeze."""
    pipe = Pipeline()
    pipe.run(ten_credit_payments("u1"), NOW)
    msg = pipe.message(*pt.chargeback("c-fraud", "u1-p4", "u1", "shop", 200.0, T0 + 2 * DAY, reason="fraud"))
    first = limit_adjustments(pipe, pipe.proc.process([msg], NOW))
    pipe.proc.forget()  # the crash: nothing of the batch was written
    again = limit_adjustments(pipe, pipe.proc.process([msg], NOW))
    pipe.proc.flush_state()
    assert [a["adjustment_id"] for a in again] == [a["adjustment_id"] for a in first] and len(first) == 1
    stored = uc.UserAccount.from_list(orjson.loads(account_bytes(pipe, "u1")))
    assert (stored.limit, stored.outstanding, stored.status, len(stored.history)) == (
        180_000, 180_000, uc.Status.FROZEN, 1)
    # Read again once more, now that the state holds it: no adjustment at all.
    assert limit_adjustments(pipe, pipe.proc.process([msg], NOW)) == []


def test_a_repayment_past_due_cuts_at_once() -> None:
    pipe = Pipeline()
    pipe.run([pt.payment("p1", "u1", "shop", 500.0, T0, method="credit_line")], NOW)
    late = pt.repayment("r1", "u1", 100.0, T0 + 3 * DAY, due_ts=T0 + 2 * DAY)
    outs = one_batch(pipe, late)
    a = limit_adjustments(pipe, outs)
    assert [(x["previous_limit"], x["new_limit"], x["reasons"], x["event_id"]) for x in a] == [
        (2000.0, 1600.0, ["REPAYMENT_PAST_DUE"], "r1")]
    pipe.run([late], NOW)  # retried: no second cut
    pipe.run([pt.payment("p2", "u1", "shop", 5.0, T0 + 8 * DAY)], NOW)  # the review cuts nothing more
    assert len(limit_adjustments(pipe)) == 1
    assert pipe.proc.credit.user_view("u1")["credit_limit"] == 1600.0


def test_a_high_alert_freezes_in_the_batch_of_the_payment_that_raised_it() -> None:
    pipe = Pipeline()
    frozen_at = []
    for record in pt.velocity_burst("u1", T0 + DAY):  # one payment per batch
        outs = one_batch(pipe, record)
        alerted = any("VELOCITY_5M" in a["reasons"] for a in pipe.records("fraud-alerts", outs))
        adjustments = limit_adjustments(pipe, outs)
        assert bool(adjustments) == alerted
        frozen_at += [(a["event_id"], a["reasons"]) for a in adjustments]
        if alerted:
            assert adjustments[0]["event_id"] == record[2]["event_id"]
    assert [r for _, r in frozen_at] == [["FRAUD_FREEZE", "VELOCITY_5M"]]


def test_merchant_line_is_cut_at_once_on_a_bust_out_alert(tmp_path) -> None:
    raw = policy_mapping()
    raw["merchant"]["chargeback_penalty"] = 0.0  # so that only the alert moves the line
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    pipe = Pipeline(Settings(credit_policy_path=path))
    records = pt.bust_out("m-bust", NOW)
    pipe.run(records, NOW + HOUR)
    lines = [a for a in pipe.records("credit-line-adjustments") if a["merchant_id"] == "m-bust"]
    alerts = [a for a in pipe.records("fraud-alerts") if "MERCHANT_BUST_OUT" in a["reasons"]]
    cut = [a for a in lines if "MERCHANT_FRAUD_ALERT" in a["reasons"]]
    assert len(alerts) == 1 and len(cut) == 1
    # The cut names the event that raised the alert, at that event's time: the same step.
    assert (cut[0]["new_line"], cut[0]["event_id"], cut[0]["ts"]) == (0.0, alerts[0]["event_ids"][0],
                                                                       alerts[0]["ts"])


def spike_policy(tmp_path, **merchant) -> Settings:
    raw = policy_mapping()
    # Only the spike moves the line: no chargeback penalty, no sales trend.
    raw["merchant"].update({"chargeback_penalty": 0.0, "sales_decline_floor": 1.0, **merchant})
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(raw))
    return Settings(credit_policy_path=path)


def sales_then_chargebacks(m: str, n_chargebacks: int, spacing: int) -> list[pt.Record]:
    """A merchant with 10 000.00 of receivables, 20 payments at it, then `n_chargebacks` chargebacks
    `spacing` apart (service disputes: a spike counts every chargeback at the merchant)."""
    out = [pt.order(f"{m}-o:placed", m, "b", 10_000.0, T0),
           pt.order(f"{m}-o:fulfilled", m, "b", 10_000.0, T0 + HOUR, status="fulfilled")]
    out += [pt.payment(f"{m}-p{i}", f"{m}-u{i}", m, 50.0, T0 + 2 * HOUR + i * 60_000) for i in range(20)]
    out += [pt.chargeback(f"{m}-c{i}", f"{m}-p{i}", f"{m}-u{i}", m, 50.0, T0 + DAY + i * spacing,
                          reason="not_as_described") for i in range(n_chargebacks)]
    return out


def test_merchant_line_is_cut_at_once_on_a_chargeback_spike(tmp_path) -> None:
    pipe = Pipeline(spike_policy(tmp_path))
    pipe.run(sales_then_chargebacks("m1", 6, HOUR), NOW, batch=1)
    lines = pipe.records("credit-line-adjustments")
    assert [(a["previous_line"], a["new_line"], a["reasons"], a["event_id"]) for a in lines] == [
        (0.0, 8000.0, ["RECEIVABLES"], "m1-o:fulfilled"),
        (8000.0, 4000.0, ["CHARGEBACK_SPIKE"], "m1-c4"),  # the fifth within 24 h
    ]
    assert pipe.proc.credit.merchant_view("m1", None)["credit_line"] == 4000.0


def test_a_spike_replayed_cuts_once(tmp_path) -> None:
    pipe = Pipeline(spike_policy(tmp_path))
    records = sales_then_chargebacks("m1", 6, HOUR)
    pipe.run(records, NOW, batch=1)
    account = pipe.kv.get(b"cm\x1fm1")
    pipe.run(records, NOW, batch=7)  # every event again: a producer retrying
    assert sum("CHARGEBACK_SPIKE" in a["reasons"] for a in pipe.records("credit-line-adjustments")) == 1
    assert pipe.kv.get(b"cm\x1fm1") == account


def test_chargebacks_spread_out_are_no_spike(tmp_path) -> None:
    pipe = Pipeline(spike_policy(tmp_path))
    pipe.run(sales_then_chargebacks("m1", 6, 6 * HOUR), NOW, batch=1)  # at most 4 in any 24 h
    assert [a["reasons"] for a in pipe.records("credit-line-adjustments")] == [["RECEIVABLES"]]


def test_a_spike_is_measured_against_the_merchants_own_chargeback_rate(tmp_path) -> None:
    # 5 in a few hours is no spike for a merchant with 60 in the weeks before: 65 in 30 days is a
    # mean of 2.17 a day, and a spike needs 3 x that, 6.5.
    pipe = Pipeline(spike_policy(tmp_path))
    m = "m1"
    records = sales_then_chargebacks(m, 0, HOUR)
    records += [pt.payment(f"{m}-q{i}", f"{m}-v{i}", m, 50.0, T0 + 2 * HOUR + i * 60_000) for i in range(65)]
    records += [pt.chargeback(f"{m}-d{i}", f"{m}-q{i}", f"{m}-v{i}", m, 50.0, T0 + DAY + i * 9 * HOUR,
                              reason="other") for i in range(60)]
    records += [pt.chargeback(f"{m}-e{i}", f"{m}-q{60 + i}", f"{m}-v{60 + i}", m, 50.0,
                              T0 + 25 * DAY + i * HOUR, reason="other") for i in range(5)]
    records.sort(key=lambda r: r[2]["ts"])
    pipe.run(records, NOW, batch=1)
    assert not any("CHARGEBACK_SPIKE" in a["reasons"] for a in pipe.records("credit-line-adjustments"))
    # The same five at a merchant without that history are a spike (the test above).


def test_the_new_policy_keys_are_validated_and_may_be_left_out() -> None:
    import pytest

    from streamrisk.credit import PolicyError, load_policy

    raw = policy_mapping(freeze_chargeback_reasons="fraud")
    raw["merchant"].update({"chargeback_spike_count": 0, "chargeback_spike_hours": "a day",
                            "chargeback_spike_cut_pct": 150})
    with pytest.raises(PolicyError) as err:
        load_policy(raw)
    msg = str(err.value)
    for needle in ("user.freeze_chargeback_reasons must be a list of non-empty strings (got 'fraud')",
                   "merchant.chargeback_spike_count must be within [1, 1000000] (got 0)",
                   "merchant.chargeback_spike_hours must be a number (got 'a day')",
                   "merchant.chargeback_spike_cut_pct must be within [0, 100] (got 150)"):
        assert needle in msg, msg
    # A policy file written before these keys existed still loads, with the shipped values.
    old = policy_mapping()
    del old["user"]["freeze_chargeback_reasons"]
    for key in [k for k in old["merchant"] if k.startswith("chargeback_spike_")]:
        del old["merchant"][key]
    loaded = load_policy(old)
    assert loaded.user.freeze_chargeback_reasons == {"fraud", "unauthorized"}
    assert (loaded.merchant.chargeback_spike_count, loaded.merchant.chargeback_spike_ms) == (5, DAY)
