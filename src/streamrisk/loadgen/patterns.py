"""Fraud patterns and normal behaviour as contract records, for tests, demos and backtests.

Each function returns `(topic, key, value)` records in send order, ending at or before `now` (event
times in epoch ms), with ids derived from the subject so several patterns can share one stream. Each
pattern is written to raise its reason code under the default ruleset (rules/default.yaml) and the
normal ones to raise none; tests in tests/test_patterns.py and tests/integration hold them to that.
"""

from __future__ import annotations

from typing import Any

MINUTE = 60_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR

Record = tuple[str, str, dict[str, Any]]


def payment(
    eid: str, user: str, merchant: str, amount: float, ts: int, device: str = "dev-1", **kw: Any
) -> Record:
    value = {"event_id": eid, "ts": ts, "user_id": user, "merchant_id": merchant, "amount": amount,
             "currency": "CNY", "method": kw.pop("method", "card"), "device_id": device, **kw}
    return ("payments", user, value)


def order(eid: str, merchant: str, user: str, amount: float, ts: int, status: str = "placed") -> Record:
    value = {"event_id": eid, "ts": ts, "order_id": _order_id(eid), "merchant_id": merchant,
             "user_id": user, "amount": amount, "currency": "CNY", "status": status}
    return ("orders", merchant, value)


def _order_id(eid: str) -> str:
    # An order's events share its order_id: their event id without the status suffix.
    return eid.rsplit(":", 1)[0]


def chargeback(
    eid: str, payment_id: str, user: str, merchant: str, amount: float, ts: int, reason: str = "fraud"
) -> Record:
    value = {"event_id": eid, "ts": ts, "payment_id": payment_id, "user_id": user,
             "merchant_id": merchant, "amount": amount, "currency": "CNY", "reason": reason}
    return ("chargebacks", user, value)


# -- user patterns


def velocity_burst(user: str, now: int, n: int = 15) -> list[Record]:
    """VELOCITY_5M: `n` ordinary payments 10 s apart at one merchant (more than 10 in 5 min)."""
    t0 = now - (n - 1) * 10_000
    return [payment(f"{user}:vb{i}", user, f"{user}-shop", 25.0, t0 + i * 10_000) for i in range(n)]


def card_testing(user: str, now: int, n: int = 7) -> list[Record]:
    """CARD_TESTING: tiny payments at a different merchant each, 20 s apart."""
    t0 = now - (n - 1) * 20_000
    return [payment(f"{user}:ct{i}", user, f"{user}-m{i}", 1.0 + (i % 3) * 0.5, t0 + i * 20_000)
            for i in range(n)]


def new_device_high_amount(user: str, now: int) -> list[Record]:
    """NEW_DEVICE_HIGH_AMOUNT: three weeks of ordinary payments on one device, then a large one
    from a device the user never used."""
    history = [payment(f"{user}:h{i}", user, f"{user}-shop", 20.0 + (i % 5) * 3,
                       now - (21 - 2 * i) * DAY, device=f"{user}-phone") for i in range(10)]
    return [*history, payment(f"{user}:big", user, f"{user}-shop", 480.0, now, device=f"{user}-new")]


def chargeback_days_late(user: str, now: int, days: int = 5) -> list[Record]:
    """CHARGEBACK: a payment, and `days` later the chargeback that names it."""
    pay = payment(f"{user}:paid", user, f"{user}-shop", 60.0, now - days * DAY)
    cb = chargeback(f"{user}:cb", f"{user}:paid", user, f"{user}-shop", 60.0, now)
    return [pay, cb]


def unmatched_chargeback(user: str, now: int) -> list[Record]:
    """UNMATCHED_CHARGEBACK: a chargeback naming a payment this deployment never saw."""
    return [chargeback(f"{user}:cb-x", f"{user}:never-seen", user, f"{user}-shop", 40.0, now)]


# -- merchant patterns


def _orders(merchant: str, tag: str, n: int, first: int, step: int, amount: float) -> list[Record]:
    out: list[Record] = []
    for i in range(n):
        ts = first + i * step
        eid = f"{merchant}:{tag}{i}"
        out.append(order(f"{eid}:placed", merchant, f"{merchant}-buyer{i % 13}", amount, ts))
        out.append(order(f"{eid}:fulfilled", merchant, f"{merchant}-buyer{i % 13}", amount, ts + MINUTE,
                         status="fulfilled"))
    return out


def refund_spike(merchant: str, now: int) -> list[Record]:
    """MERCHANT_REFUND_SPIKE: a month of orders without refunds, then a day when 40 % of 20
    orders are refunded (24 h refund rate 0.4, four times the 30-day rate)."""
    out = _orders(merchant, "old", 60, now - 28 * DAY, 11 * HOUR, 80.0)
    recent = _orders(merchant, "new", 20, now - 20 * HOUR, HOUR, 80.0)
    out += recent
    refunds = [r for r in recent if r[2]["status"] == "placed"][:8]
    for i, (_, _, placed) in enumerate(refunds):
        out.append(order(f"{placed['order_id']}:refunded", merchant, placed["user_id"], 80.0,
                         now - 10 * MINUTE + i * MINUTE, status="refunded"))
    return out


def bust_out(merchant: str, now: int) -> list[Record]:
    """MERCHANT_BUST_OUT: a quiet merchant suddenly sells 12 000 in a day, and chargebacks follow
    on three of the payments made there."""
    out = _orders(merchant, "old", 10, now - 25 * DAY, 2 * DAY, 30.0)
    out += _orders(merchant, "surge", 24, now - 20 * HOUR, 45 * MINUTE, 500.0)
    for i in range(3):
        user = f"{merchant}-victim{i}"
        out.append(payment(f"{user}:p", user, merchant, 500.0, now - 3 * HOUR + i * MINUTE))
    for i in range(3):
        user = f"{merchant}-victim{i}"
        out.append(chargeback(f"{user}:cb", f"{user}:p", user, merchant, 500.0, now - HOUR + i * MINUTE))
    return out


# -- normal behaviour


def normal_user(user: str, now: int, merchants: int = 4) -> list[Record]:
    """A month of everyday spending: one or two payments a day, one phone, a few shops."""
    out: list[Record] = []
    for day in range(30, 0, -1):
        for k in range(1 + day % 2):
            ts = now - day * DAY + k * 5 * HOUR
            amount = 18.0 + ((day * 7 + k * 3) % 11) * 4.5
            out.append(payment(f"{user}:n{day}-{k}", user, f"shop-{(day + k) % merchants}", amount, ts,
                               device=f"{user}-phone"))
    return out


def normal_merchant(merchant: str, now: int) -> list[Record]:
    """A month of steady sales, with the odd refund spread out over it."""
    out = _orders(merchant, "n", 90, now - 29 * DAY, 7 * HOUR, 60.0)
    placed = [r for r in out if r[2]["status"] == "placed"]
    for i in (10, 40, 75):
        p = placed[i][2]
        out.append(order(f"{p['order_id']}:refunded", merchant, p["user_id"], 60.0, p["ts"] + 2 * DAY,
                         status="refunded"))
    out.sort(key=lambda r: r[2]["ts"])
    return out


# -- credit


def repayment(
    eid: str, account: str, amount: float, ts: int, due_ts: int, account_type: str = "user"
) -> Record:
    value = {"event_id": eid, "ts": ts, "account_type": account_type, "account_id": account,
             "amount": amount, "currency": "CNY", "due_ts": due_ts}
    return ("repayments", account, value)


def advance(eid: str, merchant: str, amount: float, ts: int) -> Record:
    """A merchant's draw on its credit line."""
    value = {"event_id": eid, "ts": ts, "merchant_id": merchant, "amount": amount, "currency": "CNY"}
    return ("advances", merchant, value)


def _repayer(user: str, now: int, late_days: int, tag: str) -> list[Record]:
    """Ten weeks of credit_line spending, each week's balance repaid `late_days` after its due day."""
    out: list[Record] = []
    t0 = now - 70 * DAY
    for week in range(10):
        start = t0 + week * 7 * DAY
        for k in range(3):
            out.append(payment(f"{user}:{tag}p{week}-{k}", user, f"shop-{k}", 120.0, start + k * DAY + HOUR,
                               device=f"{user}-phone", method="credit_line"))
        due = start + 5 * DAY
        out.append(repayment(f"{user}:{tag}r{week}", user, 360.0, due + late_days * DAY - HOUR, due))
    return out


def on_time_repayer(user: str, now: int) -> list[Record]:
    """ON_TIME_REPAYMENTS: spends on credit every week and repays before the due day: raised."""
    return _repayer(user, now, 0, "ot")


def late_repayer(user: str, now: int) -> list[Record]:
    """REPAYMENT_PAST_DUE: the same spending, repaid two days after each due day: cut at each late
    repayment, down to the floor."""
    return _repayer(user, now, 2, "late")


def surge_then_collapse(merchant: str, now: int) -> list[Record]:
    """RECEIVABLES then SALES_DECLINE: steady sales for three weeks, a week of sales five times as
    high, then two days with none and one small sale: the line grows with the receivables, then is
    cut by the trend."""
    out = _orders(merchant, "steady", 42, now - 30 * DAY, 12 * HOUR, 100.0)
    out += _orders(merchant, "surge", 28, now - 9 * DAY, 6 * HOUR, 500.0)
    out += _orders(merchant, "quiet", 1, now - MINUTE, MINUTE, 20.0)
    return out


def charged_back_user(user: str, now: int) -> list[Record]:
    """CHARGEBACK_RECEIVED: a credit_line payment disputed two days later as not as described (a
    service dispute: the draw is reversed, nothing frozen), then an ordinary payment a week on, whose
    review cuts the limit."""
    paid = payment(f"{user}:cbp", user, f"{user}-shop", 800.0, now - 9 * DAY, method="credit_line")
    cb = chargeback(f"{user}:cb", f"{user}:cbp", user, f"{user}-shop", 800.0, now - 7 * DAY,
                    reason="not_as_described")
    return [paid, cb, payment(f"{user}:after", user, f"{user}-shop", 30.0, now)]
