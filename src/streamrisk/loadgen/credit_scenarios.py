"""The credit scenarios of the scenario traffic: users who repay on time or late, who max out their
limit or whose payment is charged back, and merchants whose sales surge then collapse or who repay
their advances late, or who draw advances within and beyond their line, so that every limit and line
adjustment path and both advance decisions happen, even in a 30 s demo.

The credit policy decides in event time: a limit is reviewed once a review period (7 days) has passed,
and a raise needs weeks of on-time repayments. A run compresses a few days of event time, so a subject
first met during the run would hardly ever be reviewed. Most stories therefore begin with their subject's
history, back-dated to end at the run's current event time and sent at once (a past `ts` is valid and
processed like any late event, CONTRACT.md), then go on live within the run. Every event is labelled
`credit`, except the payment someone else made on a user's account and its chargeback (`fraud`).

A worker reads the input topics side by side, so it may apply a history's repayments before the
payments sent just before them. The events that depend on a history (the purchase whose review raises
or cuts, a chargeback, a merchant's late repayments) therefore come live, LIVE after it, and a history
is written so that its outcome does not depend on that order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .labels import CREDIT, FRAUD
from .patterns import DAY, HOUR, MINUTE
from .synthetic import Record

if TYPE_CHECKING:
    from .scenarios import ScenarioTraffic

WEEK = 7 * DAY
# Event time between a story's history (sent at once) and its live part: a day is the same share of any
# run on the rhythm clock (1/days of it: 4 s of a 30 s demo of 7 days), where quiet hours pass in a flash.
LIVE = DAY

#: Credit scenario name -> default share of generated events that start one (like scenarios.SCENARIOS).
SHARES: dict[str, float] = {
    "on_time_repayer": 0.0004,
    "late_repayer": 0.0008,
    "credit_maxout": 0.0008,
    "charged_back": 0.0003,
    "disputed": 0.0003,
    "sales_collapse": 0.0002,
    "late_merchant": 0.0002,
    "merchant_advances": 0.0002,
}


def _credit_weeks(t: ScenarioTraffic, name: str, user: str, first: int, weeks: int,
                  late: tuple[int, int] | None, amounts: tuple[float, float] = (20, 80)) -> None:
    """`weeks` weeks of credit_line spending from `first`: three purchases of `amounts` on a week's first
    days, the week's total repaid by its due day on the fifth, or `late` (a range of ms) after it. Six
    weeks of the default amounts stay within 80 % of the initial limit, so utilization allows a raise
    even if the worker applied repayments before the purchases they repay."""
    subject = ("user", user)
    for w in range(weeks):
        start = first + w * WEEK
        total = 0.0
        for k in range(3):
            ts = start + k * DAY + t.rng.randrange(8 * HOUR, 20 * HOUR)
            pay = t.payment(ts, user, t.pick_merchant(), t.rng.uniform(*amounts), f"{user}-d", "credit_line")
            t.schedule(ts, pay, name, CREDIT, subject)
            total += pay.value["amount"]
        due = start + 4 * DAY
        paid = due - t.rng.randrange(DAY) if late is None else due + t.rng.randrange(*late)
        t.schedule(paid, t.repayment(paid, "user", user, total, due), name, CREDIT, subject)


def _credit_buys(t: ScenarioTraffic, name: str, user: str, now: int, n: int, amount: Callable[[], float],
                 gap: int) -> list[Record]:
    buys = []
    for i in range(n):
        ts = now + i * gap + t.rng.randrange(gap // 2 + 1)
        pay = t.payment(ts, user, t.pick_merchant(), amount(), f"{user}-d", "credit_line")
        t.schedule(ts, pay, name, CREDIT, ("user", user))
        buys.append(pay)
    return buys


def on_time_repayer(t: ScenarioTraffic, now: int) -> None:
    """Five weeks of credit spending, always repaid on time, then a sixth live: raised
    (ON_TIME_REPAYMENTS) at the first review after the third on-time repayment."""
    name = "on_time_repayer"
    _credit_weeks(t, name, t.new_subject(name), now + LIVE - 5 * WEEK, 6, late=None)


def late_repayer(t: ScenarioTraffic, now: int) -> None:
    """Four weeks of credit spending, each repaid a day or two late, then live purchases repaid late
    within the run: cut at each late repayment (REPAYMENT_PAST_DUE), then over its limit at times."""
    name = "late_repayer"
    user = t.new_subject(name)
    _credit_weeks(t, name, user, now + LIVE - 4 * WEEK, 4, late=(DAY, 2 * DAY), amounts=(40, 200))
    live = now + LIVE
    buys = _credit_buys(t, name, user, live, t.rng.randint(3, 5), lambda: t.rng.uniform(60, 240), 4 * HOUR)
    due = live + 2 * DAY
    for pay in buys:
        late = due + t.rng.randrange(DAY, 4 * DAY)
        rep = t.repayment(late, "user", user, pay.value["amount"], due)
        t.schedule(late, rep, name, CREDIT, ("user", user))


def credit_maxout(t: ScenarioTraffic, now: int) -> None:
    """A new user spends far beyond the initial limit within hours (OVER_LIMIT declines)."""
    name = "credit_maxout"
    user = t.new_subject(name)
    buys = _credit_buys(t, name, user, now, t.rng.randint(6, 10), lambda: t.rng.uniform(800, 2500),
                        40 * MINUTE)
    if t.rng.random() < 0.5:  # half of them then repay late, the rest not at all within the run
        due = now + 3 * DAY
        late = due + t.rng.randrange(DAY, 3 * DAY)
        total = sum(p.value["amount"] for p in buys) / 2
        t.schedule(late, t.repayment(late, "user", user, total, due), name, CREDIT, ("user", user))


def charged_back(t: ScenarioTraffic, now: int) -> None:
    """Someone else pays on a credit user's account from another device, the user disputes it days
    later as fraud: the draw is reversed and the limit frozen at once (FRAUD_FREEZE, FRAUD_CHARGEBACK),
    so the user's next purchase on credit is declined over the limit; then the user repays on time."""
    name = "charged_back"
    user = t.new_subject(name)
    subject = ("user", user)
    first = now + 2 * LIVE - WEEK  # the account's first review is due LIVE after the chargeback
    own = t.payment(first, user, t.pick_merchant(), t.rng.uniform(40, 200), f"{user}-d", "credit_line")
    t.schedule(first, own, name, CREDIT, subject)
    stolen_ts = now - 3 * DAY
    stolen = t.payment(stolen_ts, user, t.pick_merchant(), t.rng.uniform(300, 900), f"{user}-x",
                       "credit_line")
    t.schedule(stolen_ts, stolen, name, FRAUD, subject)
    cb_ts = now + LIVE
    t.schedule(cb_ts, t.chargeback(cb_ts, stolen), name, FRAUD, subject)
    after_ts = now + 3 * LIVE
    after = t.payment(after_ts, user, t.pick_merchant(), t.rng.uniform(40, 200), f"{user}-d", "credit_line")
    t.schedule(after_ts, after, name, CREDIT, subject)
    paid = after_ts + DAY
    owed = own.value["amount"] + after.value["amount"]
    t.schedule(paid, t.repayment(paid, "user", user, owed, paid + 2 * DAY), name, CREDIT, subject)


def disputed(t: ScenarioTraffic, now: int) -> None:
    """A credit user buys twice and, live, disputes the first purchase as not received: a service
    dispute, so the draw is reversed and nothing is frozen; the review at the user's repayment of the
    other purchase, a week after the first, cuts the limit (CHARGEBACK_RECEIVED). The user buys nothing
    after the dispute, so no rule about chargebacks fires on a payment of theirs."""
    name = "disputed"
    user = t.new_subject(name)
    subject = ("user", user)
    first = now + 2 * LIVE - WEEK  # the account's first review is due LIVE after the dispute
    buys = []
    for k in range(2):
        ts = first + k * HOUR
        pay = t.payment(ts, user, t.pick_merchant(), t.rng.uniform(100, 400), f"{user}-d", "credit_line")
        t.schedule(ts, pay, name, CREDIT, subject)
        buys.append(pay)
    cb_ts = now + LIVE
    t.schedule(cb_ts, t.chargeback(cb_ts, buys[0], reason="not_received"), name, CREDIT, subject)
    paid = now + 3 * LIVE
    t.schedule(paid, t.repayment(paid, "user", user, buys[1].value["amount"], paid + 2 * DAY), name, CREDIT,
               subject)


def _sell(t: ScenarioTraffic, name: str, merchant: str, ts: int, amount: float) -> None:
    """One order, placed at `ts` and fulfilled half an hour later."""
    buyer = t.rng.choice(t.users)
    placed = t.order(ts, merchant, buyer, amount, "placed")
    t.schedule(ts, placed, name, CREDIT, ("merchant", merchant))
    done = t.order(ts + 30 * MINUTE, merchant, buyer, amount, "fulfilled", placed.value["order_id"])
    t.schedule(ts + 30 * MINUTE, done, name, CREDIT, ("merchant", merchant))


def sales_collapse(t: ScenarioTraffic, now: int) -> None:
    """Two weeks of steady sales, four days at five times the value, then nothing for four days and,
    live, one small sale: the line grows with the receivables (RECEIVABLES), then falls with the sales
    trend (SALES_DECLINE)."""
    name = "sales_collapse"
    merchant = t.new_subject(name)
    for i in range(14):
        _sell(t, name, merchant, now - 30 * DAY + i * DAY + t.rng.randrange(8 * HOUR, 20 * HOUR),
              t.rng.uniform(80, 120))
    for i in range(16):
        _sell(t, name, merchant, now - 8 * DAY + i * 6 * HOUR, t.rng.uniform(400, 600))
    _sell(t, name, merchant, now + LIVE, t.rng.uniform(10, 30))


def late_merchant(t: ScenarioTraffic, now: int) -> None:
    """Three weeks of steady sales, then, live, three advances drawn and each repaid an hour later but
    days after its due date, one after the other: each repayment lowers the advance rate, and the line
    follows (LATE_REPAYMENTS)."""
    name = "late_merchant"
    merchant = t.new_subject(name)
    subject = ("merchant", merchant)
    for i in range(22):  # one sale a day, into the live part
        _sell(t, name, merchant, now + LIVE - 4 * HOUR - (21 - i) * DAY, t.rng.uniform(150, 250))
    for ts in (now + LIVE, now + LIVE + 2 * HOUR, now + LIVE + 4 * HOUR):
        rep = t.repayment(ts, "merchant", merchant, t.rng.uniform(500, 1500), ts - 2 * DAY)
        drawn = t.advance(ts - HOUR, merchant, rep.value["amount"])  # within the line
        t.schedule(ts - HOUR, drawn, name, CREDIT, subject)
        t.schedule(ts, rep, name, CREDIT, subject)


def merchant_advances(t: ScenarioTraffic, now: int) -> None:
    """Three weeks of steady sales (a line of about 80 % of them), then, live, an advance well within the
    line (approved), one far beyond it (declined, ADVANCE_OVER_LINE), and a day later the approved one
    repaid on time (the outstanding back to 0)."""
    name = "merchant_advances"
    merchant = t.new_subject(name)
    subject = ("merchant", merchant)
    for i in range(22):  # one sale a day, into the live part: about 4 400.00 of receivables
        _sell(t, name, merchant, now + LIVE - 4 * HOUR - (21 - i) * DAY, t.rng.uniform(150, 250))
    within = t.advance(now + LIVE, merchant, t.rng.uniform(300, 900))
    t.schedule(now + LIVE, within, name, CREDIT, subject)
    beyond = t.advance(now + LIVE + HOUR, merchant, t.rng.uniform(20_000, 40_000))
    t.schedule(now + LIVE + HOUR, beyond, name, CREDIT, subject)
    paid = now + LIVE + DAY
    rep = t.repayment(paid, "merchant", merchant, within.value["amount"], paid + 5 * DAY)
    t.schedule(paid, rep, name, CREDIT, subject)


STARTERS: dict[str, Callable[[ScenarioTraffic, int], None]] = {
    "on_time_repayer": on_time_repayer,
    "late_repayer": late_repayer,
    "credit_maxout": credit_maxout,
    "charged_back": charged_back,
    "disputed": disputed,
    "sales_collapse": sales_collapse,
    "late_merchant": late_merchant,
    "merchant_advances": merchant_advances,
}
