"""Labelled scenarios mixed into normal marketplace life, on a compressed event-time clock.

The stream covers `days` of event time ending when the run starts, so a load test of a minute carries
days of life: shoppers with a daily rhythm, fraud whose chargebacks arrive days later, repayments that
come after their due date. Every event's ground truth goes to a side list (`labels`), never into the
record. Deterministic for a seed and a sequence of progress values. The fraud scenarios are here, the
credit ones (users and merchants with a back-dated credit history) in credit_scenarios.py.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from . import credit_scenarios
from .labels import CREDIT, FRAUD, MALFORMED, NORMAL, Label
from .patterns import DAY, HOUR, MINUTE
from .synthetic import Record, _malformed

#: Scenario name -> (label, default share of events that start one). Shares are per generated event.
SCENARIOS: dict[str, tuple[str, float]] = {
    "velocity_burst": (FRAUD, 0.0008),
    "card_testing": (FRAUD, 0.0008),
    "account_takeover": (FRAUD, 0.0010),
    "refund_abuse": (FRAUD, 0.0003),
    "bust_out": (FRAUD, 0.0003),
    **{name: (CREDIT, share) for name, share in credit_scenarios.SHARES.items()},
}

# The first instance of each credit scenario in the mix starts at the STORY_SPACING-th generated event,
# the next one STORY_SPACING events later, and so on, so that even a short run shows every credit path;
# more follow at random, by their shares.
STORY_SPACING = 25

# Relative activity per hour of day (0-23): quiet nights, a lunch bump, busy evenings.
RHYTHM = (0.15, 0.1, 0.07, 0.05, 0.05, 0.08, 0.2, 0.45, 0.7, 0.8, 0.85, 0.95,
          1.1, 1.0, 0.85, 0.85, 0.9, 1.0, 1.2, 1.4, 1.5, 1.3, 0.9, 0.45)


def parse_mix(text: str | None) -> dict[str, float]:
    """`--scenario-mix`: "name=share,..." over the defaults; "none" turns every scenario off.
    A share is the chance that a generated event starts an instance of that scenario."""
    mix = {name: share for name, (_, share) in SCENARIOS.items()}
    if not text:
        return mix
    if text.strip() == "none":
        return dict.fromkeys(mix, 0.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in mix:
            raise ValueError(f"--scenario-mix: expected name=share with a name out of {sorted(mix)}, "
                             f"got {part!r}")
        try:
            share = float(value)
        except ValueError:
            raise ValueError(f"--scenario-mix: {name}: share must be a number, got {value!r}") from None
        if not 0.0 <= share <= 0.05:
            raise ValueError(f"--scenario-mix: {name}: share must be within 0..0.05, got {share}")
        mix[name] = share
    return mix


class RhythmClock:
    """Maps progress through the run (0..1) to event time, moving fast through quiet hours so that
    evenly paced traffic lands on a daily rhythm."""

    def __init__(self, end_ms: int, days: float) -> None:
        self.start = end_ms - int(days * DAY)
        hours = max(1, math.ceil(days * 24))
        self._edges = [self.start + h * HOUR for h in range(hours + 1)]
        cumulative = [0.0]
        for h in range(hours):
            cumulative.append(cumulative[-1] + RHYTHM[(self._edges[h] // HOUR) % 24])
        self._cum = cumulative
        self.end = end_ms

    def at(self, progress: float) -> int:
        target = min(max(progress, 0.0), 1.0) * self._cum[-1]
        h = min(bisect.bisect_right(self._cum, target) - 1, len(self._cum) - 2)
        within = (target - self._cum[h]) / (self._cum[h + 1] - self._cum[h])
        return min(self.end, int(self._edges[h] + within * HOUR))


@dataclass
class _Shopper:
    device: str
    shops: list[str]
    typical: float
    history: list[int] = field(default_factory=list)  # payment times, for account takeovers


class ScenarioTraffic:
    """Normal life plus labelled scenarios; `next(progress)` gives the next record to send."""

    def __init__(
        self,
        users: int,
        merchants: int,
        *,
        end_ms: int,
        days: float = 7.0,
        mix: dict[str, float] | None = None,
        malformed: float = 0.0,
        seed: int = 7,
        run_id: str = "",
    ) -> None:
        self.rng = rng = random.Random(seed)
        self.clock = RhythmClock(end_ms, days)
        self.mix = mix if mix is not None else parse_mix(None)
        self.malformed = malformed
        self.run_id = run_id or str(seed)
        self.merchants = [f"m{i:05d}" for i in range(merchants)]
        # Sales are skewed: a few big merchants, a long tail.
        self._merchant_weights = [1.0 / (1 + i) ** 0.8 for i in range(merchants)]
        self.shoppers = {
            f"u{i:06d}": _Shopper(f"d{rng.randrange(10**9):09d}",
                                  rng.sample(self.merchants, min(4, merchants)),
                                  round(rng.lognormvariate(3.6, 0.6), 2))
            for i in range(users)
        }
        self.users = list(self.shoppers)
        self.labels: list[Label] = []
        self.instances: dict[str, int] = dict.fromkeys(SCENARIOS, 0)
        self._due: list[tuple[int, int, Record, Label]] = []  # scheduled events, by event time
        self._seq = 0
        self._instance = ""
        self._starters: dict[str, Callable[[int], None]] = {name: self._starter(name) for name in SCENARIOS}
        self._untold = [name for name in credit_scenarios.STARTERS if self.mix.get(name, 0.0) > 0]
        self._generated = 0  # events made up by next() rather than taken from the schedule
        # Normal advances to repay: (repayment time, merchant, amount, due time), oldest first.
        self._advances_owed: deque[tuple[int, str, float, int]] = deque()

    def _starter(self, name: str) -> Callable[[int], None]:
        credit = credit_scenarios.STARTERS.get(name)
        return partial(credit, self) if credit is not None else getattr(self, f"_start_{name}")

    # ------------------------------------------------------------------ the stream

    def next(self, progress: float) -> Record | tuple[str, str, bytes]:
        """The next record at `progress` (0..1) through the run; malformed ones as raw bytes."""
        now = self.clock.at(progress)
        if self._due and self._due[0][0] <= now:
            _, _, rec, label = heapq.heappop(self._due)
            self.labels.append(label)
            return rec
        self._generated += 1
        if self._untold and self._generated % STORY_SPACING == 0:
            self._start(self._untold.pop(0), now)
            if self._due and self._due[0][0] <= now:
                return self.next(progress)
        draw = self.rng.random()
        for name in self._starters:
            draw -= self.mix.get(name, 0.0)
            if draw < 0:
                self._start(name, now)
                if self._due and self._due[0][0] <= now:
                    return self.next(progress)
                break
        if self.malformed and self.rng.random() < self.malformed:
            rec = self._normal_payment(now, label=False)
            self._label_now(rec, MALFORMED, "user", rec.key)
            return (rec.topic, rec.key, _malformed(self.rng, rec.value))
        return self._normal(now)

    def _start(self, name: str, now: int) -> None:
        self._instance = f"{name}#{self._seq}"
        self._starters[name](now)

    def _eid(self, kind: str) -> str:
        self._seq += 1
        return f"{kind}-{self.run_id}-{self._seq}"

    def _label_now(self, rec: Record, label: str, subject_type: str, subject_id: str) -> None:
        eid, ts = rec.value["event_id"], rec.value["ts"]
        self.labels.append(Label(eid, rec.topic, "normal", label, subject_type, subject_id, ts))

    def schedule(self, ts: int, rec: Record, scenario: str, label: str, subject: tuple[str, str]) -> None:
        """Send `rec` once the run's clock reaches `ts` (at once when `ts` has passed), labelled."""
        if ts > self.clock.end:
            return  # beyond the run's last event time: in life it would come later
        instance = "" if scenario == "normal" else self._instance
        lab = Label(rec.value["event_id"], rec.topic, scenario, label, subject[0], subject[1], ts, instance)
        heapq.heappush(self._due, (ts, self._seq, rec, lab))

    # ------------------------------------------------------------------ records

    def payment(self, ts: int, user: str, merchant: str, amount: float, device: str,
                method: str = "card") -> Record:
        return Record("payments", user, {
            "event_id": self._eid("pay"), "ts": ts, "user_id": user, "merchant_id": merchant,
            "amount": round(max(0.5, amount), 2), "currency": "CNY", "method": method,
            "device_id": device, "country": "CN"})

    def order(self, ts: int, merchant: str, user: str, amount: float, status: str,
              order_id: str | None = None) -> Record:
        return Record("orders", merchant, {
            "event_id": self._eid("ord"), "ts": ts, "order_id": order_id or self._eid("o"),
            "merchant_id": merchant, "user_id": user, "amount": round(amount, 2), "currency": "CNY",
            "status": status})

    def repayment(self, ts: int, kind: str, account: str, amount: float, due: int) -> Record:
        return Record("repayments", account, {
            "event_id": self._eid("rep"), "ts": ts, "account_type": kind, "account_id": account,
            "amount": round(amount, 2), "currency": "CNY", "due_ts": due})

    def advance(self, ts: int, merchant: str, amount: float) -> Record:
        return Record("advances", merchant, {
            "event_id": self._eid("adv"), "ts": ts, "merchant_id": merchant, "amount": round(amount, 2),
            "currency": "CNY"})

    def chargeback(self, ts: int, pay: Record, reason: str = "fraud") -> Record:
        p = pay.value
        return Record("chargebacks", p["user_id"], {
            "event_id": self._eid("cb"), "ts": ts, "payment_id": p["event_id"], "user_id": p["user_id"],
            "merchant_id": p["merchant_id"], "amount": p["amount"], "currency": "CNY", "reason": reason})

    # ------------------------------------------------------------------ normal life

    def _normal(self, now: int) -> Record:
        kind = self.rng.random()
        if kind < 0.55:
            return self._normal_payment(now)
        if kind < 0.9:
            return self._normal_order(now)
        return self._normal_repayment(now)

    def _normal_payment(self, now: int, label: bool = True) -> Record:
        rng = self.rng
        user = rng.choice(self.users)
        s = self.shoppers[user]
        merchant = rng.choice(s.shops) if rng.random() < 0.8 else self.pick_merchant()
        method = rng.choices(("card", "wallet", "credit_line"), (0.45, 0.35, 0.2))[0]
        rec = self.payment(now, user, merchant, s.typical * rng.lognormvariate(0, 0.3), s.device, method)
        if label:
            s.history.append(now)
            self._label_now(rec, NORMAL, "user", user)
            if method == "credit_line":  # repaid on time: due in 10 days, paid 0-8 days after buying
                due = now + 10 * DAY
                rep = self.repayment(now + rng.randrange(8 * DAY), "user", user, rec.value["amount"], due)
                self.schedule(rep.value["ts"], rep, "normal", NORMAL, ("user", user))
        return rec

    def pick_merchant(self) -> str:
        return self.rng.choices(self.merchants, self._merchant_weights)[0]

    def _normal_order(self, now: int) -> Record:
        rng = self.rng
        merchant = self.pick_merchant()
        user = rng.choice(self.users)
        rec = self.order(now, merchant, user, self.shoppers[user].typical * rng.lognormvariate(0.2, 0.4),
                         "placed")
        self._label_now(rec, NORMAL, "merchant", merchant)
        oid, amount = rec.value["order_id"], rec.value["amount"]
        if rng.random() < 0.04:
            later = self.order(now + rng.randrange(10 * MINUTE, 6 * HOUR), merchant, user, amount,
                                "cancelled", oid)
            self.schedule(later.value["ts"], later, "normal", NORMAL, ("merchant", merchant))
            return rec
        done_at = now + rng.randrange(20 * MINUTE, 4 * HOUR)
        done = self.order(done_at, merchant, user, amount, "fulfilled", oid)
        self.schedule(done_at, done, "normal", NORMAL, ("merchant", merchant))
        if rng.random() < 0.03:  # the occasional refund, days later
            back = self.order(done_at + rng.randrange(DAY, 4 * DAY), merchant, user, amount, "refunded", oid)
            self.schedule(back.value["ts"], back, "normal", NORMAL, ("merchant", merchant))
        return rec

    def _normal_repayment(self, now: int) -> Record:
        """Merchants draw advances on their lines and repay them on time: the next of these events
        repays the oldest advance whose repayment day has come, else draws a new one (a merchant whose
        line is too small has it declined, and its repayment then finds nothing owed). The same draws
        from the generator whichever it is, so the rest of the stream does not depend on the choice."""
        merchant = self.pick_merchant()
        amount = round(self.rng.lognormvariate(6, 0.5) / 4, 2)
        wait = self.rng.randrange(DAY, 10 * DAY)
        owed = self._advances_owed
        if owed and owed[0][0] <= now:
            _, merchant, amount, due = owed.popleft()
            rec = self.repayment(now, "merchant", merchant, amount, due)
        else:
            rec = self.advance(now, merchant, amount)
            owed.append((now + wait, merchant, amount, now + 11 * DAY))
        self._label_now(rec, NORMAL, "merchant", merchant)
        return rec

    # ------------------------------------------------------------------ fraud

    def new_subject(self, name: str) -> str:
        self.instances[name] += 1
        return f"{name[:2]}{self.instances[name]:04d}-{self.run_id}"

    def _fraud_payments(self, name: str, user: str, plan: list[tuple[int, str, float, str]],
                        disputed: float) -> None:
        """Schedule a fraudster's payments (ts, merchant, amount, device); a share `disputed` of them
        comes back as a chargeback 2-6 days later."""
        for ts, merchant, amount, device in plan:
            pay = self.payment(ts, user, merchant, amount, device)
            self.schedule(ts, pay, name, FRAUD, ("user", user))
            if self.rng.random() < disputed:
                cb_ts = ts + self.rng.randrange(2 * DAY, 6 * DAY)
                self.schedule(cb_ts, self.chargeback(cb_ts, pay), name, FRAUD, ("user", user))

    def _start_velocity_burst(self, now: int) -> None:
        user = self.new_subject("velocity_burst")
        shop, n = self.pick_merchant(), self.rng.randint(13, 18)
        plan = [(now + i * self.rng.randrange(8_000, 20_000), shop, self.rng.uniform(20, 90), f"{user}-d")
                for i in range(n)]
        plan.sort()
        self._fraud_payments("velocity_burst", user, plan, disputed=0.4)

    def _start_card_testing(self, now: int) -> None:
        user = self.new_subject("card_testing")
        shops = self.rng.sample(self.merchants, min(len(self.merchants), 9))
        n = self.rng.randint(6, 8)
        plan = [(now + i * self.rng.randrange(10_000, 35_000), shops[i % len(shops)],
                 self.rng.choice((0.5, 1.0, 1.5, 2.0, 3.0)), f"{user}-d") for i in range(n)]
        plan.sort()
        cash_out = plan[-1][0] + self.rng.randrange(2 * MINUTE, 10 * MINUTE)
        plan.append((cash_out, shops[-1], self.rng.uniform(300, 900), f"{user}-d"))
        self._fraud_payments("card_testing", user, plan, disputed=0.5)

    def _start_account_takeover(self, now: int) -> None:
        # A shopper with a recent history on one phone; the fraudster pays big from a new device.
        for _ in range(20):
            user = self.rng.choice(self.users)
            s = self.shoppers[user]
            if sum(1 for t in s.history if t > now - 30 * DAY) >= 3:
                break
        else:
            return
        self.instances["account_takeover"] += 1
        device = f"ato-{self.run_id}-{self.instances['account_takeover']}"
        plan = [(now + i * self.rng.randrange(3 * MINUTE, 15 * MINUTE), self.pick_merchant(),
                 max(250.0, s.typical * self.rng.uniform(8, 15)), device)
                for i in range(self.rng.randint(1, 3))]
        self._fraud_payments("account_takeover", user, plan, disputed=0.9)

    def _start_refund_abuse(self, now: int) -> None:
        # A ring of accounts buys at one merchant within half a day and has most of it refunded.
        name = "refund_abuse"
        if now < (self.clock.start + self.clock.end) // 2:
            return  # rings target established shops, whose month of history shows the spike
        # A mid-sized shop: at a big one the ring's refunds would drown in ordinary orders, a tiny
        # one has too little history for a 30-day rate to compare with.
        merchant = self.rng.choice(self.merchants[5:40] or self.merchants)
        self.instances[name] += 1
        ring = [f"ra{self.instances[name]:04d}x{i}-{self.run_id}" for i in range(self.rng.randint(6, 9))]
        subject = ("merchant", merchant)
        for i in range(self.rng.randint(22, 30)):
            user = ring[i % len(ring)]
            ts = now + self.rng.randrange(12 * HOUR)
            amount = self.rng.uniform(80, 300)
            pay = self.payment(ts, user, merchant, amount, f"{user}-d")
            self.schedule(ts, pay, name, FRAUD, ("user", user))
            placed = self.order(ts, merchant, user, amount, "placed")
            oid = placed.value["order_id"]
            self.schedule(ts, placed, name, FRAUD, subject)
            done = self.order(ts + 30 * MINUTE, merchant, user, amount, "fulfilled", oid)
            self.schedule(ts + 30 * MINUTE, done, name, FRAUD, subject)
            if self.rng.random() < 0.75:
                back_ts = ts + self.rng.randrange(2 * HOUR, 10 * HOUR)
                back = self.order(back_ts, merchant, user, amount, "refunded", oid)
                self.schedule(back_ts, back, name, FRAUD, subject)

    def _start_bust_out(self, now: int) -> None:
        # A new merchant trades quietly for a day, then sells far beyond its history for three days;
        # chargebacks on the surge's payments arrive two days after each.
        name = "bust_out"
        if now + 4 * DAY > self.clock.end:
            return  # too late in the run for its chargebacks to arrive
        merchant = self.new_subject(name)
        subject = ("merchant", merchant)
        for i in range(4):
            ts = now + i * 5 * HOUR
            buyer = self.rng.choice(self.users)
            for status in ("placed", "fulfilled"):
                rec = self.order(ts, merchant, buyer, 40.0, status, f"{merchant}-q{i}")
                self.schedule(ts, rec, name, FRAUD, subject)
                ts += 20 * MINUTE
        surge = now + DAY
        for i in range(90):
            ts = surge + i * 45 * MINUTE
            mule = f"{merchant}-mule{i % 30}"
            amount = self.rng.uniform(400, 700)
            pay = self.payment(ts, mule, merchant, amount, f"{mule}-d")
            self.schedule(ts, pay, name, FRAUD, ("user", mule))
            for status in ("placed", "fulfilled"):
                rec = self.order(ts, merchant, mule, amount, status, f"{merchant}-s{i}")
                self.schedule(ts, rec, name, FRAUD, subject)
            if self.rng.random() < 0.3:
                cb_ts = ts + 2 * DAY
                self.schedule(cb_ts, self.chargeback(cb_ts, pay), name, FRAUD, subject)
