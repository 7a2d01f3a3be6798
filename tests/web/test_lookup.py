"""What the state API answers, built from a processor's state (no HTTP, no Kafka)."""

from __future__ import annotations

import math

from streamrisk.core.decisions import stable_id
from streamrisk.core.records import Outcome
from streamrisk.settings import DAY_MS
from streamrisk.state.kv import DictKV
from streamrisk.state.payment_index import IndexedPayment, PaymentIndex
from streamrisk.web.lookup import decision_of, merchant_body, payment_body, user_body
from tests.pipeline import Pipeline

T0 = 1_800_000_000_000


def pay(eid: str, user: str, ts: int, amount: float = 10.0) -> dict:
    return {"event_id": eid, "ts": ts, "user_id": user, "merchant_id": "m1", "amount": amount,
            "currency": "CNY", "method": "card", "device_id": "d1"}


def test_user_answer_has_features_credit_recent_payments_and_alerts() -> None:
    pipe = Pipeline()
    # 12 payments within 2 minutes: a burst the default ruleset alerts on (VELOCITY_5M).
    recs = [("payments", "u1", pay(f"p{i}", "u1", T0 + i * 10_000, 12.5)) for i in range(12)]
    # The chargeback comes within the alert dedupe window: past it (plus the allowed lateness) the
    # alert's dedupe entry expires and is swept, and the answer lists only unexpired alerts.
    cb = {"event_id": "cb1", "ts": T0 + 30 * 60_000, "payment_id": "p3", "user_id": "u1", "merchant_id": "m1",
          "amount": 12.5, "currency": "CNY", "reason": "fraud"}
    pipe.run([*recs, ("chargebacks", "u1", cb)], now=T0 + 2 * DAY_MS)
    body = user_body(pipe.proc, "u1", pipe.proc.users.get("u1"), 0)
    assert body["features"]["payment_count_30d"] == 12
    assert {"credit_limit", "credit_outstanding", "credit_available"} <= body.keys()
    recent = body["recent_payments"]
    assert [p["event_id"] for p in recent] == [f"p{i}" for i in range(11, 1, -1)]  # newest 10
    assert recent[0]["amount"] == 12.5
    charged = next(p for p in recent if p["event_id"] == "p3")
    assert charged["charged_back"] and charged["chargeback_id"] == "cb1"
    assert "VELOCITY_5M" in [a["reason"] for a in body["alerts"]]


def test_merchant_answer_has_features_and_credit_line() -> None:
    pipe = Pipeline()
    order = {"event_id": "o1", "ts": T0, "order_id": "ord1", "merchant_id": "m1", "user_id": "u1",
             "amount": 40.0, "currency": "CNY", "status": "placed"}
    pipe.run([("orders", "m1", order)], now=T0 + DAY_MS)
    body = merchant_body(pipe.proc, "m1", pipe.proc.merchants.get("m1"), 0)
    assert body["features"]["order_count_5m"] == 1 and body["features"]["order_amount_sum_5m"] == 40.0
    assert {"credit_line", "credit_outstanding", "credit_available"} <= body.keys()


def test_merchant_answer_lists_its_last_decisions_as_risk_decisions_carried_them() -> None:
    pipe = Pipeline()
    # Twelve users pay m1 (decided on the users' side, forwarded to the merchant's), one a large amount.
    recs = [("payments", f"u{i}", pay(f"p{i}", f"u{i}", T0 + i * 1000, 9000.0 if i == 11 else 10.0))
            for i in range(12)]
    outs = pipe.run(recs, now=T0 + DAY_MS, batch=5)
    decisions = {d["event_id"]: d for d in pipe.records("risk-decisions", outs)}
    body = merchant_body(pipe.proc, "m1", pipe.proc.merchants.get("m1"), 0)
    recent = body["recent_decisions"]
    assert [d["event_id"] for d in recent] == [f"p{i}" for i in range(11, 1, -1)]  # newest 10
    for d in recent:
        assert d == {k: v for k, v in decisions[d["event_id"]].items() if k != "decided_at"}
    assert recent[0]["amount"] == 9000.0 and recent[0]["merchant_id"] == "m1"


def test_recent_reads_newest_first_across_chunks_with_late_payments() -> None:
    index = PaymentIndex(DictKV(), chunk_lines=4)
    times = [5, 1, 2, 3, 4, 9, 8, 7, 0, 6]  # arrival order; 0 arrives late, in a newer chunk
    for i, t in enumerate(times):
        index.add(0, "u", f"p{i}", "m", T0 + t, 100)
        if i == 6:
            index.flush()  # part of it in the KV, part in the open chunk
    newest = index.recent("u", 3)
    assert [p.ts - T0 for p in newest] == [9, 8, 7]
    assert [p.ts - T0 for p in index.recent("u", 20)] == sorted(times, reverse=True)
    assert index.recent("nobody", 5) == []


def test_decision_of_reads_the_stored_outcome_or_says_none() -> None:
    assert decision_of(IndexedPayment("p1", "m1", T0, 100, None)) is None
    decided = Outcome("review", 0.7, "v1", ["VELOCITY_5M", "NEW_DEVICE"])
    stored = IndexedPayment("p1", "m1", T0, 100, None, decided, offset=41)
    assert decision_of(stored) == {
        "decision_id": stable_id("decision", "p1", "v1"),  # the id risk-decisions carries
        "action": "review", "score": 0.7, "reasons": ["VELOCITY_5M", "NEW_DEVICE"], "rules_version": "v1",
    }


def test_payment_answer_carries_the_decision_made_for_it() -> None:
    pipe = Pipeline()
    outs = pipe.run([("payments", "u1", pay("p1", "u1", T0, 30.0))], now=T0 + DAY_MS)
    decision = next(o.value for o in outs if o.topic == pipe.settings.topic("risk-decisions"))
    found = pipe.proc.payment_index.find("u1", "p1")
    assert found is not None
    body = payment_body(found, "u1")
    assert body["amount"] == 30.0 and body["charged_back"] is False
    assert body["decision"] == {k: decision[k] for k in ("decision_id", "action", "score", "reasons",
                                                         "rules_version")}


def test_a_user_whose_windows_were_swept_but_whose_credit_account_is_kept_answers_with_its_credit() -> None:
    from streamrisk.settings import Settings
    from streamrisk.web.lookup import entity_of

    pipe = Pipeline(Settings(partitions=1))
    credit = dict(pay("p1", "u1", T0, 120.0), method="credit_line")
    pipe.run([("payments", "u1", credit)], now=T0)
    for day in range(1, 122):  # other users keep the clock moving: u1's only payment is 121 days old
        ts = T0 + day * DAY_MS
        pipe.run([("payments", f"b{day}", pay(f"b{day}", f"b{day}", ts))], now=ts)
    proc = pipe.proc
    assert proc.users.get("u1") is None  # its windows and payment index were swept ...
    entity = entity_of(proc, "user", "u1")
    assert entity is not None  # ... but it owes 120.00: its account is kept, and the API answers
    body = user_body(proc, "u1", entity, 0)
    assert (body["credit_outstanding"], body["credit_available"]) == (120.0, 1880.0)
    assert body["features"]["payment_count_30d"] == 0 and body["latest_ts"] == -1
    assert entity_of(proc, "user", "never-seen") is None  # still 404
    assert proc.users.get("u1") is None and "u1" not in proc.users.slots  # the read kept nothing


def test_a_users_and_a_merchants_answer_carry_their_pd_and_price() -> None:
    pipe = Pipeline()
    # A fraud chargeback freezes u1's limit at 0 (card payments drew nothing): utilization 1, one bad signal.
    cb = {"event_id": "cb1", "ts": T0 + 60_000, "payment_id": "p0", "user_id": "u1", "merchant_id": "m1",
          "amount": 12.5, "currency": "CNY", "reason": "fraud"}
    pipe.run([("payments", "u1", pay("p0", "u1", T0, 12.5)), ("chargebacks", "u1", cb),
              ("payments", "u2", pay("p1", "u2", T0))], now=T0 + DAY_MS)
    frozen = user_body(pipe.proc, "u1", pipe.proc.users.get("u1"), 0)
    assert frozen["credit_status"] == "frozen"
    pd = round(1 / (1 + math.exp(-(-4.8 + 1.5 + 0.9 + 2.5))), 4)
    assert (frozen["pd"], frozen["price_bp"]) == (pd, 6000)
    fresh = user_body(pipe.proc, "u2", pipe.proc.users.get("u2"), 0)  # no credit account: a new one's
    assert (fresh["pd"], fresh["price_bp"]) == (0.0082, 900)
    merchant = merchant_body(pipe.proc, "m1", pipe.proc.merchants.get("m1"), 0)
    # m1: one chargeback of its two payments, a chargeback rate of 0.5 (its line is 0 for it too).
    assert merchant["features"]["chargeback_rate_30d"] == 0.5
    assert (merchant["pd"], merchant["price_bp"]) == (1.0, 6000)
    clean = pipe.proc.credit.merchant_view("m-none", None)  # no account, no state: a new line's
    assert (clean["pd"], clean["price_bp"]) == (round(1 / (1 + math.exp(5.0)), 4), 900)


def test_without_credit_the_pd_and_price_are_null() -> None:
    from streamrisk.settings import Settings

    pipe = Pipeline(Settings(credit_enabled=False))
    pipe.run([("payments", "u1", pay("p0", "u1", T0))], now=T0)
    body = user_body(pipe.proc, "u1", pipe.proc.users.get("u1"), 0)
    assert body["pd"] is None and body["price_bp"] is None and body["credit_limit"] is None
