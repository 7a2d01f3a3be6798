"""A replay after a crash never changes state: whatever part of a batch's state records reached the
changelog, reading the batch again ends in the state one clean pass gives.

The worker hands every state record of a batch to the producer separately (the user's chunks and meta,
the payment index, the credit account, ...), so a crash can leave any subset of them durable, while
the batch's input offsets stay uncommitted and the batch is read again. These tests build that table
(the committed state plus a subset of the records written since, in the order they were written), run
a new processor on it over the uncommitted input and the rest, and compare its state with a clean
pass: credit accounts, features (also against the brute-force oracle) and the payment index.

    committed ──┬── epoch (batches written, not committed) ──┬── rest
                │  any subset of its state records survives   │
                └──────── read again after the crash ─────────┴──────>
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrisk.core.processor import Processor
from streamrisk.core.records import Message
from streamrisk.credit import user as uc
from streamrisk.credit.book import MERCHANT_KIND, USER_KIND
from streamrisk.credit.merchant import MerchantAccount
from streamrisk.loadgen.synthetic import Record
from streamrisk.rules import load_ruleset
from streamrisk.settings import DAY_MS, MINUTE_MS, Settings, SettingsError
from streamrisk.state.kv import SEP, DictKV
from tests.feature_oracle import FeatureOracle, compare

T0 = 1_800_000_000_000
NOW = T0 + 60 * DAY_MS
SETTINGS = Settings(partitions=1)
USERS = ("u0", "u1", "u2")
MERCHANTS = ("m0", "m1")

# Decisions that read the payment alone, so a payment decided again after a crash gets the decision it
# got the first time, and the clean pass is an exact reference. Amount 13 raises a high-severity alert
# (a freeze of the user's limit), 12 a medium one (a cut signal).
PAYMENT_ONLY_RULES = load_ruleset({
    "version": "replay-test-1",
    "params": {},
    "rules": [
        {"name": "big", "when": "payment.amount > 40.0", "action": "decline", "severity": "low",
         "reason": "BIG"},
        {"name": "mid", "when": "payment.amount > 30.0", "action": "review", "severity": "low",
         "reason": "MID"},
        {"name": "freeze", "when": "payment.amount == 13.0", "action": "alert", "severity": "high",
         "reason": "FREEZE_ME"},
        {"name": "cut", "when": "payment.amount == 12.0", "action": "alert", "severity": "medium",
         "reason": "CUT_ME"},
    ],
    "score": {"bias": -6.0, "weights": {"log1p(payment.amount)": 0.1}, "review_at": 0.6, "decline_at": 0.9},
})


# -- records
def payment(eid: str, user: str, ts: int, amount: float, method: str = "credit_line",
            merchant: str = "m0", device: str = "d0") -> Record:
    return Record("payments", user, {"event_id": eid, "ts": ts, "user_id": user, "merchant_id": merchant,
                                     "amount": amount, "currency": "CNY", "method": method,
                                     "device_id": device})


def repayment(eid: str, account: str, ts: int, amount: float, late: bool = False,
              account_type: str = "user") -> Record:
    return Record("repayments", account, {"event_id": eid, "ts": ts, "account_type": account_type,
                                          "account_id": account, "amount": amount, "currency": "CNY",
                                          "due_ts": ts - 1 if late else ts + DAY_MS})


def chargeback(eid: str, paid: Record, ts: int) -> Record:
    v = paid.value
    return Record("chargebacks", v["user_id"], {"event_id": eid, "ts": ts, "payment_id": v["event_id"],
                                                "user_id": v["user_id"], "merchant_id": v["merchant_id"],
                                                "amount": v["amount"], "currency": "CNY", "reason": "fraud"})


def order(eid: str, order_id: str, merchant: str, user: str, ts: int, amount: float, status: str) -> Record:
    return Record("orders", merchant, {"event_id": eid, "ts": ts, "order_id": order_id,
                                       "merchant_id": merchant, "user_id": user, "amount": amount,
                                       "currency": "CNY", "status": status})


def messages(records: list[Record]) -> list[Message]:
    """Each record at the next offset of its topic (one partition), as a consumer reads them."""
    offsets: dict[str, int] = {}
    out = []
    for r in records:
        offset = offsets[r.topic] = offsets.get(r.topic, -1) + 1
        out.append(Message(SETTINGS.topic(r.topic), 0, offset, r.key.encode(), orjson.dumps(r.value)))
    return out


# -- running
class Worker:
    """One processor over a table, fed as a worker would be; forwarded merchant events come back to it."""

    def __init__(self, kv: DictKV, rules: Any) -> None:
        self.kv = kv
        self.proc = Processor(SETTINGS, kv, rules)
        self.outs: list[Any] = []
        self._forwarded = 0

    def run(self, msgs: list[Message], batch: int) -> None:
        for i in range(0, len(msgs), batch):
            self._batch(msgs[i : i + batch])

    def _batch(self, msgs: list[Message]) -> None:
        proc = self.proc
        outs = proc.process(msgs, now_ms=NOW)
        proc.flush_state()
        forwarded = []
        for o in outs:
            if o.topic == proc.t_merchant_events:
                self._forwarded += 1
                forwarded.append(Message(o.topic, 0, self._forwarded, o.key.encode(), o.value))
            else:
                self.outs.append(o)
        if forwarded:
            self._batch(forwarded)


def clean_pass(records: list[Record], rules: Any, batch: int = 4) -> Worker:
    w = Worker(DictKV(), rules)
    w.run(messages(records), batch)
    return w


def crashed_pass(
    records: list[Record], rules: Any, committed: int, crash: int, survives: Iterable[int] | None,
    rng: random.Random | None = None, batch: int = 4, batch_after: int = 3,
) -> tuple[Worker, Worker]:
    """Run records [:committed] (durable), then [committed:crash] (not committed), keep the state
    records written since the commit that `survives` names (all when None: a random subset from `rng`),
    and run a new worker on that table over records [committed:]. Returns (crashed, recovered)."""
    msgs = messages(records)
    first = Worker(DictKV(), rules)
    first.run(msgs[:committed], batch)
    table = dict(first.kv.data)
    mark = len(first.kv.writes)
    first.run(msgs[committed:crash], batch)
    written = first.kv.writes[mark:]
    if survives is None:
        assert rng is not None
        share = rng.random()
        survives = [i for i in range(len(written)) if rng.random() < share]
    for i in sorted(survives):
        key, value = written[i]
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    kv = DictKV()
    kv.data = table
    recovered = Worker(kv, rules)
    recovered.run(msgs[committed:], batch_after)
    return first, recovered


def interrupted_writes(records: list[Record], committed: int, crash: int) -> int:
    """How many state records the batch [committed:crash] writes after records [:committed], each read
    as one batch (what `crashed_pass` chooses survivors from, with those batches)."""
    first = Worker(DictKV(), PAYMENT_ONLY_RULES)
    msgs = messages(records)
    first.run(msgs[:committed], committed)
    mark = len(first.kv.writes)
    first.run(msgs[committed:crash], crash - committed)
    return len(first.kv.writes) - mark


# -- reading state
def user_account(w: Worker, user: str) -> uc.UserAccount | None:
    raw = w.kv.get(USER_KIND + SEP + user.encode())
    return uc.UserAccount.from_list(orjson.loads(raw)) if raw else None


def merchant_account(w: Worker, merchant: str) -> MerchantAccount | None:
    raw = w.kv.get(MERCHANT_KIND + SEP + merchant.encode())
    return MerchantAccount.from_list(orjson.loads(raw)) if raw else None


def account_state(a: uc.UserAccount | None) -> Any:
    if a is None:
        return None
    # A cut signal counted again is the same signal (a review reads only whether there are any).
    return (a.limit, a.next_review, a.clock, a.outstanding, a.status, a.until, a.last_cut, list(a.on_time),
            sorted(set(a.negatives)), sorted(a.pending), a.draws, a.history, a.applied)


def features(w: Worker, kind: str, entity: str) -> dict[str, float] | None:
    store = w.proc.users if kind == "user" else w.proc.merchants
    e = store.get(entity)
    return None if e is None else dict(e.features())


def assert_same_state(got: Worker, want: Worker, records: list[Record]) -> None:
    oracle = FeatureOracle()
    oracle.add_all(records)
    for u in USERS:
        assert account_state(user_account(got, u)) == account_state(user_account(want, u)), u
        f = features(got, "user", u)
        assert f == features(want, "user", u), u
        if u in oracle.user_clock:
            assert not compare(oracle.user(u), f), u
    for m in MERCHANTS:
        a, b = merchant_account(got, m), merchant_account(want, m)
        assert (a and (a.advance_bp, a.applied)) == (b and (b.advance_bp, b.applied)), m
        f = features(got, "merchant", m)
        assert f == features(want, "merchant", m), m
        if m in oracle.merchant_clock:
            assert not compare(oracle.merchant(m), f), m
    for r in records:
        if r.topic == "payments":
            pid = r.value["event_id"]
            assert got.proc.payment_index.find(r.key, pid) == want.proc.payment_index.find(r.key, pid), pid


# -- streams
@st.composite
def streams(draw: Any, credit_only: bool = False) -> list[Record]:
    """Payments (mostly credit_line) of a few users, with producer retries (the same event again), and
    unless `credit_only` repayments, chargebacks of earlier payments and merchants' orders."""
    n = draw(st.integers(6, 28))
    records: list[Record] = []
    payments: list[Record] = []
    kinds = ["pay", "pay", "pay", "retry"] + ([] if credit_only else ["repay", "mrepay", "cb", "order"])
    for i in range(n):
        ts = T0 + i * 7 * MINUTE_MS + draw(st.integers(0, 5)) * MINUTE_MS
        user = draw(st.sampled_from(USERS))
        kind = draw(st.sampled_from(kinds))
        if kind == "retry" and records:
            records.append(draw(st.sampled_from(records)))
        elif kind == "repay":
            records.append(repayment(f"r{i}", user, ts, float(draw(st.integers(1, 20))), draw(st.booleans())))
        elif kind == "mrepay":
            merchant = draw(st.sampled_from(MERCHANTS))
            records.append(repayment(f"mr{i}", merchant, ts, 50.0, draw(st.booleans()), "merchant"))
        elif kind == "cb" and payments:
            records.append(chargeback(f"c{i}", draw(st.sampled_from(payments)), ts))
        elif kind == "order":
            merchant = draw(st.sampled_from(MERCHANTS))
            status = draw(st.sampled_from(["placed", "fulfilled", "refunded"]))
            oid = f"o{draw(st.integers(0, 3))}"
            records.append(order(f"e{i}", oid, merchant, user, ts, float(draw(st.integers(1, 60))), status))
        else:
            methods = ["credit_line"] if credit_only else ["credit_line", "credit_line", "card"]
            method = draw(st.sampled_from(methods))
            amounts = [5, 50, 400, 900] if credit_only else [5, 12, 13, 20, 35, 45]
            amount = float(draw(st.sampled_from(amounts)))
            p = payment(f"p{i}", user, ts, amount, method, draw(st.sampled_from(MERCHANTS)),
                        draw(st.sampled_from(["d0", "d1"])))
            records.append(p)
            payments.append(p)
    return records


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(records=streams(), cut=st.tuples(st.integers(0, 40), st.integers(0, 40)), seed=st.integers(0, 2**32))
def test_any_surviving_subset_of_a_batch_then_its_replay_ends_as_one_clean_pass(
    records: list[Record], cut: tuple[int, int], seed: int
) -> None:
    committed, crash = sorted(min(c, len(records)) for c in cut)
    want = clean_pass(records, PAYMENT_ONLY_RULES)
    _, got = crashed_pass(records, PAYMENT_ONLY_RULES, committed, crash, None, random.Random(seed))
    assert_same_state(got, want, records)


@FAST
@given(records=streams(credit_only=True), cut=st.tuples(st.integers(0, 30), st.integers(0, 30)),
       seed=st.integers(0, 2**32))
def test_outstanding_is_the_sum_of_the_approved_credit_payments_after_any_crash(
    records: list[Record], cut: tuple[int, int], seed: int
) -> None:
    """With the shipped rules a payment's decision reads state (credit available, velocity), so one
    decided again after a crash lost its decision may be decided otherwise: the account follows the
    decision the index keeps, and features still count each payment once."""
    committed, crash = sorted(min(c, len(records)) for c in cut)
    _, got = crashed_pass(records, None, committed, crash, None, random.Random(seed))
    oracle = FeatureOracle()
    oracle.add_all(records)
    unique = {r.value["event_id"]: r for r in records}
    for u in USERS:
        owed = 0
        for pid, r in unique.items():
            if r.key != u:
                continue
            stored = got.proc.payment_index.find(u, pid)
            assert stored is not None and stored.outcome is not None, pid
            if stored.outcome.action in ("approve", "review"):
                owed += round(r.value["amount"] * 100)
        a = user_account(got, u)
        assert (a.outstanding if a else 0) == owed, u
        if u in oracle.user_clock:
            assert not compare(oracle.user(u), features(got, "user", u)), u
    # A decision sent for every payment, the last one sent being the one the index keeps.
    last: dict[str, str] = {}
    for o in got.outs:
        if o.topic == got.proc.t_decisions:
            last[o.value["event_id"]] = o.value["action"]
    crashed_decided = {pid for pid in unique if pid not in last}
    for pid in crashed_decided:  # decided before the crash, not read again (committed)
        assert got.proc.payment_index.find(unique[pid].key, pid) is not None
    for pid, action in last.items():
        stored = got.proc.payment_index.find(unique[pid].key, pid)
        assert stored is not None and stored.outcome is not None and stored.outcome.action == action, pid


def _one_batch() -> list[Record]:
    p1 = payment("p1", "u0", T0, 20.0)
    p2 = payment("p2", "u0", T0 + MINUTE_MS, 35.0, merchant="m1")
    p5 = payment("p5", "u0", T0 + 6 * MINUTE_MS, 7.0)
    return [
        payment("p0", "u0", T0 - DAY_MS, 10.0),
        repayment("r0", "u0", T0 - DAY_MS + 1, 1.0),
        chargeback("c5", p5, T0 - DAY_MS + 2),  # read before its payment: held until p5 claims it
        # the batch a crash interrupts
        p1, p2, payment("p3", "u0", T0 + 2 * MINUTE_MS, 13.0, merchant="m1"),
        chargeback("c1", p1, T0 + 3 * MINUTE_MS),
        repayment("r1", "u0", T0 + 4 * MINUTE_MS, 5.0),
        repayment("mr1", "m1", T0 + 4 * MINUTE_MS, 50.0, late=True, account_type="merchant"),
        order("o1", "O1", "m1", "u0", T0 + 5 * MINUTE_MS, 30.0, "fulfilled"),
        order("o2", "O1", "m1", "u0", T0 + 6 * MINUTE_MS, 10.0, "refunded"),
        p5,
        # read after the crash
        p2,  # a producer's retry
        payment("p4", "u0", T0 + 7 * MINUTE_MS, 5.0),
    ]


def test_every_subset_of_one_batch_s_state_records_replays_to_the_clean_state() -> None:
    """One batch of a user's payments, a chargeback, repayments and a merchant's orders: every subset
    of the state records it wrote survives a crash (when there are more than 11: every subset that
    lacks at most two records or holds at most two, and 300 random ones)."""
    records = _one_batch()
    want = clean_pass(records, PAYMENT_ONLY_RULES, batch=2)
    n = interrupted_writes(records, 3, 12)
    assert n >= 8  # chunks, metas, the index, the accounts, the merchant's decisions ...
    subsets: list[Iterable[int]]
    if n <= 11:
        subsets = [c for k in range(n + 1) for c in itertools.combinations(range(n), k)]
    else:  # all but two records at most, or two at most, and random subsets
        subsets = [c for k in (0, 1, 2, n - 2, n - 1, n) for c in itertools.combinations(range(n), k)]
        rng = random.Random(17)
        subsets += [[i for i in range(n) if rng.random() < 0.5] for _ in range(300)]
    for survives in subsets:
        _, got = crashed_pass(records, PAYMENT_ONLY_RULES, 3, 12, survives, batch=9, batch_after=9)
        assert_same_state(got, want, records)


@pytest.mark.parametrize("reverse", [False, True])
def test_a_credit_draw_is_applied_once_whichever_record_survived(reverse: bool) -> None:
    """The issue's two orders: the account durable and the user's chunk not (the draw was applied twice),
    and the chunk and index durable but not the account (the draw was lost)."""
    records = [payment("p1", "u0", T0, 20.0), payment("p2", "u0", T0 + MINUTE_MS, 25.0)]
    first = Worker(DictKV(), PAYMENT_ONLY_RULES)
    first.run(messages(records), 2)
    keys = [k for k, _ in first.kv.writes]
    account = USER_KIND + SEP + b"u0"
    survives = [i for i, k in enumerate(keys) if (k != account) == reverse]
    _, got = crashed_pass(records, PAYMENT_ONLY_RULES, 0, 2, survives)
    assert user_account(got, "u0").outstanding == 4_500
    assert features(got, "user", "u0")["payment_count_1h"] == 2


# -- the dedupe horizon: a payment sent again is recognised while the payment index keeps it
def _resent_after_the_user_was_swept(settings_: Settings) -> tuple[Processor, list[Any]]:
    """u0 pays once on credit; 40 days of another user's traffic move the partition's clock until the
    sweep removes u0's idle state (its chunks: 30 days); then a producer sends u0's payment again."""
    kv = DictKV()
    proc = Processor(settings_, kv, PAYMENT_ONLY_RULES)
    first = payment("p1", "u0", T0, 20.0)
    offset = 0

    def run(r: Record, ts: int) -> list[Any]:
        nonlocal offset
        offset += 1
        msg = Message(SETTINGS.topic(r.topic), 0, offset, r.key.encode(), orjson.dumps(r.value))
        return proc.run_local([msg], ts + MINUTE_MS)

    run(first, T0)
    for day in range(1, 41):
        ts = T0 + day * DAY_MS
        run(payment(f"v{day}", "u1", ts, 5.0, "card"), ts)
    assert proc.users.get("u0") is None  # swept: its chunks no longer know p1
    return proc, run(first, T0 + 41 * DAY_MS)


def test_a_payment_sent_again_after_its_user_was_swept_has_no_second_effect() -> None:
    proc, out = _resent_after_the_user_was_swept(SETTINGS)
    assert not [o for o in out if o.topic == proc.t_decisions]  # CONTRACT: no second output either
    assert proc.users.get("u0") is None  # no feature state made anew from the repeat
    account = uc.UserAccount.from_list(orjson.loads(proc.credit.kv.get(USER_KIND + SEP + b"u0")))
    assert account.outstanding == 2_000
    assert proc.counters.duplicates >= 1


def test_the_dedupe_horizon_is_a_setting_at_least_the_payment_index_retention() -> None:
    s = Settings(partitions=1, payment_index_ms=2 * DAY_MS)
    assert s.dedupe_horizon == 2 * DAY_MS
    longer = Settings.from_env({"STREAMRISK_PAYMENT_INDEX_DAYS": "2", "STREAMRISK_DEDUPE_HORIZON_DAYS": "60",
                                "STREAMRISK_PARTITIONS": "1"})
    assert longer.dedupe_horizon == 60 * DAY_MS
    with pytest.raises(SettingsError, match="DEDUPE_HORIZON"):
        Settings(payment_index_ms=180 * DAY_MS, dedupe_horizon_ms=30 * DAY_MS).check()
    # Past the payment index's retention (2 days here) a payment is forgotten, unless the horizon
    # keeps it longer: then the repeat is still recognised.
    proc, out = _resent_after_the_user_was_swept(s)
    assert [o.value["event_id"] for o in out if o.topic == proc.t_decisions] == ["p1"]
    proc, out = _resent_after_the_user_was_swept(longer)
    assert not [o for o in out if o.topic == proc.t_decisions]


# -- advances: decided and drawn once, whichever of the batch's state records survived
def advance(eid: str, merchant: str, ts: int, amount: float) -> Record:
    return Record("advances", merchant, {"event_id": eid, "ts": ts, "merchant_id": merchant, "amount": amount,
                                         "currency": "CNY"})


def _advances_batch() -> list[Record]:
    return [
        order("o1", "O1", "m1", "u0", T0, 1000.0, "placed"),
        order("o2", "O1", "m1", "u0", T0 + 1, 1000.0, "fulfilled"),  # a line of 800.00
        advance("a0", "m1", T0 + MINUTE_MS, 100.0),
        # the batch a crash interrupts
        advance("a1", "m1", T0 + 2 * MINUTE_MS, 500.0),
        advance("a2", "m1", T0 + 3 * MINUTE_MS, 400.0),  # above the 200.00 available: declined
        repayment("mr1", "m1", T0 + 4 * MINUTE_MS, 300.0, account_type="merchant"),
        advance("a3", "m1", T0 + 5 * MINUTE_MS, 450.0),
        order("o3", "O2", "m1", "u1", T0 + 6 * MINUTE_MS, 50.0, "placed"),
        # read after the crash
        advance("a1", "m1", T0 + 2 * MINUTE_MS, 500.0),  # a producer's retry
        advance("a4", "m1", T0 + 7 * MINUTE_MS, 60.0),
    ]


def advance_decisions(w: Worker) -> dict[str, tuple[str, float, float]]:
    """The last decision sent per advance: action, line, outstanding after it."""
    return {o.value["event_id"]: (o.value["action"], o.value["credit_line"], o.value["credit_outstanding"])
            for o in w.outs if o.topic == SETTINGS.topic("advance-decisions")}


def test_every_subset_of_a_batch_of_advances_replays_to_the_clean_state() -> None:
    records = _advances_batch()
    want = clean_pass(records, PAYMENT_ONLY_RULES, batch=2)
    a = merchant_account(want, "m1")
    assert a is not None and a.line == 80_000
    assert [v[0] for v in advance_decisions(want).values()] == ["approve", "approve", "decline", "approve",
                                                                 "decline"]
    assert a.outstanding == 10_000 + 50_000 - 30_000 + 45_000  # a0 + a1 - mr1 + a3; a4 (60.00) over 50.00
    n = interrupted_writes(records, 3, 8)
    assert n >= 2  # the merchant's state (the repayment, the order), its credit account
    for survives in (c for k in range(n + 1) for c in itertools.combinations(range(n), k)):
        _, got = crashed_pass(records, PAYMENT_ONLY_RULES, 3, 8, survives, batch=5, batch_after=5)
        b = merchant_account(got, "m1")
        assert b is not None
        assert (b.outstanding, b.advances, b.applied) == (a.outstanding, a.advances, a.applied), survives
        # Every advance read again gets the decision the clean pass gave it (its first may never have
        # reached the topic), and the producer's retry of a1 none.
        assert advance_decisions(got) == {k: v for k, v in advance_decisions(want).items() if k != "a0"}
        sent = [o for o in got.outs if o.topic == SETTINGS.topic("advance-decisions")]
        assert len(sent) == 4, survives
