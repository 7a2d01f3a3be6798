"""Synthetic, contract-valid marketplace traffic: payments, orders, repayments, chargebacks.

Deterministic for a seed, so a load test or a benchmark can be repeated. Each call to `next()` returns
one record for one input topic, with the message key the contract asks for.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Any, NamedTuple


class Record(NamedTuple):
    topic: str  # contract name, without the deployment prefix
    key: str
    value: dict[str, Any]


@dataclass
class Mix:
    """Share of each kind of record, and of deliberately malformed ones."""

    payments: float = 0.59
    orders: float = 0.30
    repayments: float = 0.10
    chargebacks: float = 0.01
    malformed: float = 0.0
    # Share of events that start a burst: one user paying BURST_SIZE times in quick succession.
    bursts: float = 0.0
    # Share of events that start a credit story (see _story): weeks of back-dated history that
    # make a limit rise, a limit fall or a merchant's line follow its sales, within seconds.
    credit_stories: float = 0.0


BURST_SIZE = 12
# The load test's and demo's share: about one story per 400 events.
CREDIT_STORIES = 0.0025
STORY_KINDS = 4


# Malformed payments, one per contract rule a record can break (CONTRACT.md "Input topics").
def _malformed(rng: random.Random, base: dict[str, Any]) -> bytes:
    import orjson

    kind = rng.randrange(6)
    v = dict(base)
    if kind == 0:
        return b"{not json"
    if kind == 1:
        del v["merchant_id"]
    elif kind == 2:
        v["ts"] = str(v["ts"])
    elif kind == 3:
        v["amount"] = -abs(v["amount"])
    elif kind == 4:
        v["method"] = "cheque"
    else:
        v["currency"] = "XXX"
    return orjson.dumps(v)


class Traffic:
    """A stream of marketplace events for `users` shoppers and `merchants` sellers."""

    def __init__(
        self,
        users: int = 1000,
        merchants: int = 100,
        seed: int = 7,
        currency: str = "CNY",
        mix: Mix | None = None,
        run_id: str = "",
    ) -> None:
        self.rng = random.Random(seed)
        self.users = [f"u{i:06d}" for i in range(users)]
        self.merchants = [f"m{i:05d}" for i in range(merchants)]
        self.devices = {u: f"d{self.rng.randrange(10**9):09d}" for u in self.users}
        self.currency = currency
        self.mix = mix or Mix()
        self.run_id = run_id or f"{seed}"
        self._seq = 0
        self._open_orders: deque[dict[str, Any]] = deque(maxlen=10_000)
        self._recent_payments: deque[dict[str, Any]] = deque(maxlen=10_000)
        self._burst: tuple[str, int] | None = None  # (user, payments still to send)
        self._story: deque[Record] = deque()  # records of the credit story being told
        self._stories = 0
        m = self.mix
        self._weights = [m.payments, m.orders, m.repayments, m.chargebacks]

    def _eid(self, prefix: str) -> str:
        self._seq += 1
        return f"{prefix}-{self.run_id}-{self._seq}"

    def _amount(self) -> float:
        return round(min(5000.0, self.rng.lognormvariate(4.0, 1.0)), 2)

    def payment(self, ts: int, user: str | None = None, amount: float | None = None) -> Record:
        u = user or self.rng.choice(self.users)
        v = {
            "event_id": self._eid("pay"),
            "ts": ts,
            "user_id": u,
            "merchant_id": self.rng.choice(self.merchants),
            "amount": amount if amount is not None else self._amount(),
            "currency": self.currency,
            "method": self.rng.choice(("credit_line", "card", "wallet")),
            "device_id": self.devices[u],
            "country": "CN",
        }
        self._recent_payments.append(v)
        return Record("payments", u, v)

    def order(self, ts: int) -> Record:
        if self._open_orders and self.rng.random() < 0.5:
            placed = self._open_orders.popleft()
            status = "fulfilled" if self.rng.random() < 0.9 else "cancelled"
            v = dict(placed, event_id=self._eid("ord"), ts=ts, status=status)
            if status == "fulfilled" and self.rng.random() < 0.05:
                v["status"] = "refunded"
            return Record("orders", v["merchant_id"], v)
        v = {
            "event_id": self._eid("ord"),
            "ts": ts,
            "order_id": self._eid("o"),
            "merchant_id": self.rng.choice(self.merchants),
            "user_id": self.rng.choice(self.users),
            "amount": self._amount(),
            "currency": self.currency,
            "status": "placed",
        }
        self._open_orders.append(v)
        return Record("orders", v["merchant_id"], v)

    def repayment(self, ts: int) -> Record:
        is_user = self.rng.random() < 0.8
        account = self.rng.choice(self.users if is_user else self.merchants)
        due = ts + self.rng.randrange(-3, 10) * 86_400_000
        v = {
            "event_id": self._eid("rep"),
            "ts": ts,
            "account_type": "user" if is_user else "merchant",
            "account_id": account,
            "amount": self._amount(),
            "currency": self.currency,
            "due_ts": due,
        }
        return Record("repayments", account, v)

    def chargeback(self, ts: int) -> Record:
        p = self.rng.choice(self._recent_payments) if self._recent_payments else self.payment(ts).value
        v = {
            "event_id": self._eid("cb"),
            "ts": ts,
            "payment_id": p["event_id"],
            "user_id": p["user_id"],
            "merchant_id": p["merchant_id"],
            "amount": p["amount"],
            "currency": self.currency,
            "reason": "fraud",
        }
        return Record("chargebacks", p["user_id"], v)

    def _start_story(self, ts: int) -> None:
        """An on-time repayer, a late repayer, a merchant whose sales surge then collapse, or a user
        whose credit payment is charged back, in turn:
        their history is back-dated to end at `ts`, so reviews and line changes happen at once."""
        from . import patterns

        kinds = (patterns.on_time_repayer, patterns.late_repayer, patterns.surge_then_collapse,
                 patterns.charged_back_user)
        story = kinds[self._stories % len(kinds)]
        self._stories += 1
        subject = f"{story.__name__.replace('_', '-')}-{self.run_id}-{self._stories}"
        self._story.extend(Record(*r) for r in sorted(story(subject, ts), key=lambda r: r[2]["ts"]))

    def next(self, ts: int) -> Record | tuple[str, str, bytes]:
        """The next record at event time `ts`; a malformed one comes as (topic, key, raw bytes)."""
        if self._story and self.rng.random() < 0.5:
            return self._story.popleft()
        # Each kind of story once from the start, so a short run shows them all; then at random.
        share = self.mix.credit_stories
        if not self._story and share and (self._stories < STORY_KINDS or self.rng.random() < share):
            self._start_story(ts)
            return self._story.popleft()
        if self._burst is not None:
            user, left = self._burst
            self._burst = (user, left - 1) if left > 1 else None
            return self.payment(ts, user=user)
        if self.mix.bursts and self.rng.random() < self.mix.bursts:
            self._burst = (self.rng.choice(self.users), BURST_SIZE - 1)
            return self.payment(ts, user=self._burst[0])
        if self.mix.malformed and self.rng.random() < self.mix.malformed:
            rec = self.payment(ts)
            self._recent_payments.pop()
            return (rec.topic, rec.key, _malformed(self.rng, rec.value))
        kind = self.rng.choices((0, 1, 2, 3), self._weights)[0]
        if kind == 0:
            return self.payment(ts)
        if kind == 1:
            return self.order(ts)
        if kind == 2:
            return self.repayment(ts)
        return self.chargeback(ts)
