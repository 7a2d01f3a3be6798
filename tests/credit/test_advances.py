"""Supply-chain finance: a merchant's advances drawn on its credit line and repaid, through the processor
(a whole deployment in one process, no broker).

    T0       order 1 000.00 placed and fulfilled ── line 800.00 (80 % of the receivables)
    T0 + 1h  advance a1 500.00 ── approve, outstanding 500.00, available 300.00
    T0 + 1h  advance a2 300.01 ── decline ADVANCE_OVER_LINE (above the 300.00 available), nothing drawn
    T0 + 2h  merchant repayment 200.00 ── outstanding 300.00, available 500.00

Everything within a day of the sale, so the sales trend keeps the line at 800.00 (docs/credit.md).
"""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrisk.core.decisions import stable_id
from streamrisk.core.records import Message
from streamrisk.credit.merchant import MerchantAccount
from streamrisk.loadgen import patterns as pt
from streamrisk.settings import Settings
from tests.pipeline import Pipeline

from .conftest import DAY, T0

NOW = T0 + 60 * DAY
H = DAY // 24
M = "m-adv"


def with_line(merchant: str = M, amount: float = 1000.0) -> list[pt.Record]:
    """An order fulfilled at T0: receivables `amount`, a line of 80 % of it."""
    return [pt.order(f"{merchant}-o:placed", merchant, "b1", amount, T0),
            pt.order(f"{merchant}-o:fulfilled", merchant, "b1", amount, T0 + 60_000, status="fulfilled")]


def merchant_repayment(eid: str, amount: float, ts: int, merchant: str = M) -> pt.Record:
    return pt.repayment(eid, merchant, amount, ts, ts + DAY, account_type="merchant")


def decisions(pipe: Pipeline) -> dict[str, dict]:
    return {d["event_id"]: d for d in pipe.records("advance-decisions")}


def credit(pipe: Pipeline, merchant: str = M) -> tuple[float, float, float, float]:
    v = pipe.proc.credit.merchant_view(merchant, pipe.proc.merchants.get(merchant))
    return v["credit_line"], v["credit_outstanding"], v["credit_available"], v["credit_utilization"]


def test_an_advance_within_the_available_line_is_approved_and_drawn() -> None:
    pipe = Pipeline()
    pipe.run([*with_line(), pt.advance("a1", M, 500.0, T0 + H)], NOW)
    (d,) = pipe.records("advance-decisions")
    assert d["decision_id"] == stable_id("advance-decision", "a1", pipe.proc.credit.policy.version)
    got = {k: d[k] for k in ("event_id", "merchant_id", "ts", "action", "reasons", "credit_line",
                             "credit_outstanding", "credit_available", "amount")}
    assert got == {"event_id": "a1", "merchant_id": M, "ts": T0 + H, "action": "approve", "reasons": [],
                   "credit_line": 800.0, "credit_outstanding": 500.0, "credit_available": 300.0,
                   "amount": 500.0}
    assert isinstance(d["decided_at"], int)
    assert credit(pipe) == (800.0, 500.0, 300.0, 0.625)
    assert pipe.proc.stats()["advance_decisions"] == {"approve": 1}


def test_an_advance_above_the_available_line_is_declined_with_its_reason_and_draws_nothing() -> None:
    pipe = Pipeline()
    pipe.run([*with_line(), pt.advance("a1", M, 500.0, T0 + H), pt.advance("a2", M, 300.01, T0 + H + 1),
              pt.advance("a3", M, 300.0, T0 + H + 2)], NOW)
    d = decisions(pipe)
    assert (d["a2"]["action"], d["a2"]["reasons"]) == ("decline", ["ADVANCE_OVER_LINE"])
    assert (d["a2"]["credit_line"], d["a2"]["credit_outstanding"]) == (800.0, 500.0)
    # Exactly the available line is within it.
    assert (d["a3"]["action"], d["a3"]["credit_outstanding"], d["a3"]["credit_available"]) == (
        "approve", 800.0, 0.0)
    assert credit(pipe) == (800.0, 800.0, 0.0, 1.0)


def test_a_merchant_without_a_line_has_every_advance_declined() -> None:
    pipe = Pipeline()
    pipe.run([pt.advance("a1", "m-new", 0.01, T0)], NOW)
    (d,) = pipe.records("advance-decisions")
    assert (d["action"], d["reasons"], d["credit_line"], d["credit_outstanding"]) == (
        "decline", ["ADVANCE_OVER_LINE"], 0.0, 0.0)


def test_a_merchant_repayment_pays_advances_down_and_never_below_zero() -> None:
    pipe = Pipeline()
    pipe.run([*with_line(), pt.advance("a1", M, 500.0, T0 + H), merchant_repayment("r1", 200.0, T0 + 3 * H)],
             NOW)
    assert credit(pipe)[1:3] == (300.0, 500.0)
    # An overpayment takes the outstanding to 0; the rest is not kept as credit for later advances.
    pipe.run([merchant_repayment("r2", 1000.0, T0 + 4 * H)], NOW)
    line, outstanding, available, _ = credit(pipe)
    assert (outstanding, available) == (0.0, line)
    assert pipe.proc.stats()["advance_overpayments"] == 1
    pipe.run([pt.advance("a2", M, line + 0.01, T0 + 5 * H)], NOW)
    assert decisions(pipe)["a2"]["action"] == "decline"
    # The repayment sent again pays nothing down twice.
    pipe.run([pt.advance("a3", M, 100.0, T0 + 6 * H), merchant_repayment("r1", 200.0, T0 + 3 * H)], NOW)
    assert credit(pipe)[1] == 100.0


def test_an_advance_sent_again_draws_once_and_gets_no_second_decision() -> None:
    pipe = Pipeline()
    pipe.run([*with_line(), pt.advance("a1", M, 500.0, T0 + H)], NOW)
    duplicates = pipe.proc.stats()["duplicates"]
    outs = pipe.run([pt.advance("a1", M, 500.0, T0 + H)], NOW)  # a producer's retry: another offset
    assert pipe.records("advance-decisions", outs) == []
    assert credit(pipe)[1] == 500.0
    assert pipe.proc.stats()["duplicates"] == duplicates + 1
    # Also a declined one: no second decision, and not approved once the line has room.
    pipe.run([pt.advance("a2", M, 400.0, T0 + H), merchant_repayment("r1", 500.0, T0 + 3 * H)], NOW)
    outs = pipe.run([pt.advance("a2", M, 400.0, T0 + H)], NOW)
    assert pipe.records("advance-decisions", outs) == []
    assert credit(pipe)[1] == 0.0


def test_an_advance_read_again_at_its_offset_gets_its_decision_again_and_draws_once() -> None:
    # A crash after the account reached the changelog but before the input offset was committed: the
    # same record (same offset) is read again.
    pipe = Pipeline()
    pipe.run(with_line(), NOW)
    first = pipe.message(*pt.advance("a1", M, 500.0, T0 + H))
    (d1,) = pipe.records("advance-decisions", pipe.proc.run_local([first], NOW))
    again = Message(first.topic, first.partition, first.offset, first.key, first.value)
    (d2,) = pipe.records("advance-decisions", pipe.proc.run_local([again], NOW + 1000))
    assert {**d1, "decided_at": 0} == {**d2, "decided_at": 0}
    assert credit(pipe)[1] == 500.0


def test_a_malformed_advance_is_dead_lettered_with_its_reason_and_counted() -> None:
    pipe = Pipeline()
    good = pt.advance("a1", M, 500.0, T0)[2]
    bad = [
        ("advances", M, {k: v for k, v in good.items() if k != "merchant_id"}),
        ("advances", "someone-else", good),
        ("advances", M, {**good, "amount": -5}),
        ("advances", M, {**good, "currency": "USD"}),
        ("advances", M, b"{not json"),
    ]
    outs = pipe.run(bad, NOW)
    errors = [d["error"] for d in pipe.records("dead-letters", outs)]
    assert [e.split(": ", 1)[1] for e in errors] == [
        "missing required field 'merchant_id'",
        "message key must be the record's merchant_id 'm-adv' (got b'someone-else')",
        "amount must be > 0 (got -5)",
        "currency 'USD' is not accepted (accepted: CNY)",
        "value is not valid JSON: unexpected character, expected a string key: line 1 column 2 (char 1)",
    ]
    assert all(e.startswith("advances record at partition 0 offset ") for e in errors)
    assert pipe.records("advance-decisions", outs) == []
    stats = pipe.proc.stats()
    assert (stats["dead_letters"], stats["consumed"]["advances"]) == (5, 5)


def test_without_credit_every_advance_is_declined_credit_off() -> None:
    pipe = Pipeline(Settings(credit_enabled=False))
    pipe.run([*with_line(), pt.advance("a1", M, 1.0, T0 + H)], NOW)
    (d,) = pipe.records("advance-decisions")
    assert (d["action"], d["reasons"], d["credit_line"]) == ("decline", ["CREDIT_OFF"], 0.0)


def test_the_merchant_api_shows_outstanding_available_and_utilization() -> None:
    from streamrisk.web.lookup import merchant_body

    pipe = Pipeline()
    pipe.run([*with_line(), pt.advance("a1", M, 200.0, T0 + H)], NOW)
    body = merchant_body(pipe.proc, M, pipe.proc.merchants.get(M), 0)
    got = [body[k] for k in ("credit_line", "credit_outstanding", "credit_available", "credit_utilization")]
    assert got == [800.0, 200.0, 600.0, 0.25]


# -- the state against a brute force: what the merchant owes is the approved advances less repayments

events = st.lists(st.tuples(
    st.sampled_from(["advance", "repay", "again"]), st.integers(1, 60_000), st.integers(0, 30)),
    min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(events, st.integers(1, 7))
def test_outstanding_is_the_approved_advances_less_repayments(seq: list, batch: int) -> None:
    """Advances, merchant repayments and producer retries of either, in batches of any size: every
    advance is decided against the line less what is owed, and the outstanding equals a brute force
    over the events in the order sent (each id once, never below 0)."""
    pipe = Pipeline()
    pipe.run(with_line(), NOW)  # line 800.00
    line = 80_000
    records: list[pt.Record] = []
    sent: list[pt.Record] = []
    for i, (kind, cents, pick) in enumerate(seq):
        ts = T0 + H + i
        if kind == "again" and sent:
            records.append(sent[pick % len(sent)])
            continue
        rec = pt.advance(f"a{i}", M, cents / 100, ts) if kind == "advance" else merchant_repayment(
            f"r{i}", cents / 100, ts)
        sent.append(rec)
        records.append(rec)
    pipe.run(records, NOW, batch=batch)
    owed, seen, expected = 0, set(), {}
    for topic, _, v in records:
        if (topic, v["event_id"]) in seen:
            continue
        seen.add((topic, v["event_id"]))
        amount = round(v["amount"] * 100)
        if topic == "advances":
            approved = amount <= line - owed
            owed += amount if approved else 0
            expected[v["event_id"]] = ("approve" if approved else "decline", owed)
        else:
            owed = max(0, owed - amount)
    got = {d["event_id"]: (d["action"], round(d["credit_outstanding"] * 100))
           for d in pipe.records("advance-decisions")}
    assert got == expected
    assert len(pipe.records("advance-decisions")) == len(expected)  # one decision per advance
    assert credit(pipe)[:2] == (800.0, owed / 100)  # the line never moved
    # And the account in the table says the same.
    raw = pipe.kv.get(b"cm\x1f" + M.encode())
    assert MerchantAccount.from_list(orjson.loads(raw)).outstanding == owed
