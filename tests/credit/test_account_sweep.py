"""Credit state leaves the table: closed user accounts, settled merchant accounts of expired merchants,
and order indexes past the settlement period are swept (with tombstones); whatever is still owed, frozen,
cut or held stays, however old."""

from __future__ import annotations

import orjson

from streamrisk.credit import user as uc
from streamrisk.credit.book import MERCHANT_KIND, USER_KIND
from streamrisk.credit.merchant import MerchantAccount
from streamrisk.loadgen import patterns as pt
from streamrisk.settings import Settings
from streamrisk.state import keys
from streamrisk.state.kv import SEP
from tests.pipeline import Pipeline

from .conftest import DAY, T0

# One partition, so every key's partition is the one the messages come on (Pipeline feeds partition 0).
SETTINGS = Settings(partitions=1, credit_account_idle_ms=60 * DAY)


def credit_payment(eid: str, user: str, amount: float, ts: int, merchant: str = "shop") -> pt.Record:
    return pt.payment(eid, user, merchant, amount, ts, method="credit_line")


def user_key(user: str) -> bytes:
    return USER_KIND + SEP + user.encode()


def pass_days(pipe: Pipeline, first: int, last: int, start: int = T0) -> None:
    """Other users' card payments, one a day, keep the partition's event-time clock moving."""
    for day in range(first, last + 1):
        ts = start + day * DAY
        pipe.run([pt.payment(f"busy{day}", f"busy{day}", f"shop{day}", 5.0, ts)], ts)


def tombstoned(pipe: Pipeline, key: bytes) -> bool:
    return key not in pipe.kv.data and (key, None) in pipe.kv.writes


def test_a_settled_idle_account_is_swept_with_a_tombstone_and_the_next_payment_opens_a_new_one() -> None:
    pipe = Pipeline(SETTINGS)
    pipe.run([credit_payment("p1", "u1", 300.0, T0),
              pt.repayment("r1", "u1", 300.0, T0 + DAY, T0 + 5 * DAY)], T0 + DAY)
    assert user_key("u1") in pipe.kv.data
    pass_days(pipe, 2, 58)  # idle 57 days: within the 60 days, kept
    assert user_key("u1") in pipe.kv.data
    pass_days(pipe, 59, 70)  # past 60 days and the allowed lateness, and a walk of the table
    assert tombstoned(pipe, user_key("u1"))
    assert pipe.proc.stats()["memory"]["user_credit_accounts_swept"] == 1
    pipe.run([credit_payment("p2", "u1", 1900.0, T0 + 71 * DAY)], T0 + 71 * DAY)
    view = pipe.proc.credit.user_view("u1")
    assert (view["credit_limit"], view["credit_outstanding"]) == (2000.0, 1900.0)


def test_an_account_with_a_balance_owed_is_kept_however_old() -> None:
    pipe = Pipeline(SETTINGS)
    pipe.run([credit_payment("p1", "u1", 300.0, T0),
              pt.repayment("r1", "u1", 299.0, T0 + DAY, T0 + 5 * DAY)], T0 + DAY)  # 1.00 still owed
    pass_days(pipe, 2, 400, start=T0)
    assert user_key("u1") in pipe.kv.data
    assert pipe.proc.credit.user_view("u1")["credit_outstanding"] == 1.0


def test_a_frozen_account_is_kept_however_old_and_so_is_a_cut_one() -> None:
    pipe = Pipeline(SETTINGS)
    pipe.run([credit_payment("p1", "u1", 10.0, T0), credit_payment("p2", "u2", 10.0, T0)], T0)
    book = pipe.proc.credit
    for user, change in (("u1", {4: uc.Status.FROZEN.value, 5: T0 + 30 * DAY}), ("u2", {0: 150_000})):
        raw = orjson.loads(pipe.kv.data[user_key(user)])
        raw[3] = 0  # nothing owed
        for i, v in change.items():
            raw[i] = v
        pipe.kv.put(0, user_key(user), orjson.dumps(raw))
    book.forget()
    pass_days(pipe, 1, 400)
    assert user_key("u1") in pipe.kv.data and user_key("u2") in pipe.kv.data
    assert book.user_view("u1")["credit_status"] == "frozen"
    assert book.user_view("u2")["credit_limit"] == 1500.0


def test_a_closed_account_not_swept_yet_decides_as_a_new_one() -> None:
    # The sweep is invisible to decisions: the book treats a closed account as absent whether or not
    # the sweep has reached it.
    pipe = Pipeline(SETTINGS)
    pipe.run([credit_payment("p1", "u1", 300.0, T0),
              pt.repayment("r1", "u1", 300.0, T0 + DAY, T0 + 5 * DAY)], T0 + DAY)
    book = pipe.proc.credit
    acct = book.user(0, "u1", T0 + 2 * DAY, open_at=False)
    assert acct is not None and acct.outstanding == 0
    assert book.user(0, "u1", T0 + 62 * DAY, open_at=False) is None  # closed at that time
    fresh = book.user(0, "u1", T0 + 62 * DAY, open_at=True)
    assert fresh is not None and fresh.clock == T0 + 62 * DAY and fresh is not acct
    # Opened anew, the account is written at once (a restart must reopen it with the same review
    # date: tests/test_replay.py), so the closed one's record is replaced rather than left to the sweep.
    pipe.proc.flush_state()
    assert orjson.loads(pipe.kv.data[user_key("u1")])[2] == T0 + 62 * DAY
    pass_days(pipe, 62, 72)
    assert not tombstoned(pipe, user_key("u1"))  # a new account, not idle


def test_old_order_keys_are_swept_and_a_settled_merchant_account_once_its_merchant_expired() -> None:
    pipe = Pipeline(SETTINGS)
    # m1 gets a line (80 % of 1,000.00 receivables); m2's receivables are too small to publish one.
    pipe.run([pt.order("o1:placed", "m1", "u1", 1000.0, T0),
              pt.order("o1:fulfilled", "m1", "u1", 1000.0, T0 + 1, "fulfilled"),
              pt.order("o2:placed", "m2", "u1", 50.0, T0),
              pt.order("o2:fulfilled", "m2", "u1", 50.0, T0 + 1, "fulfilled")], T0 + DAY)
    m1, m2 = MERCHANT_KIND + SEP + b"m1", MERCHANT_KIND + SEP + b"m2"

    def order_keys(merchant: str) -> list[bytes]:
        return [k for k in pipe.kv.data if keys.kind_of(k) == keys.ORDER_INDEX and merchant.encode() in k]

    assert order_keys("m1") and order_keys("m2")
    assert orjson.loads(pipe.kv.data[m1])[1] == 80_000
    # m2 under a merchant fraud hold that runs for years, its line at 0.
    pipe.kv.put(0, m2, orjson.dumps([8000, 0, T0 + 1000 * DAY, [[T0, 0, 0, ["MERCHANT_FRAUD_ALERT"]]]]))
    pipe.proc.credit.forget()
    pass_days(pipe, 1, 40)  # past the settlement period (30 d), and the merchants' state expired
    assert not order_keys("m1") and not order_keys("m2")
    assert pipe.proc.stats()["memory"]["order_indexes_swept"] == 2
    assert pipe.proc.merchants.get("m1") is None and pipe.proc.merchants.get("m2") is None
    # A published line stays until the merchant's next event reprices it; a hold stays while it runs.
    assert m1 in pipe.kv.data and m2 in pipe.kv.data
    pipe.kv.put(0, m2, orjson.dumps([8000, 0, T0 + 2 * DAY, [[T0, 0, 0, ["MERCHANT_FRAUD_ALERT"]]]]))
    pipe.proc.credit.forget()
    pass_days(pipe, 41, 50)
    assert tombstoned(pipe, m2) and m1 in pipe.kv.data
    assert pipe.proc.stats()["memory"]["merchant_credit_accounts_swept"] == 1


def test_a_merchant_account_is_kept_while_it_owes_and_for_the_settlement_period_after_an_advance() -> None:
    """m1 owes an advance: kept however old. m2 only ever had an advance declined (no line): kept for the
    settlement period after it, so the advance sent again within it is still recognised, then swept."""
    pipe = Pipeline(SETTINGS)
    m1, m2 = MERCHANT_KIND + SEP + b"m1", MERCHANT_KIND + SEP + b"m2"
    # A line would keep m1's account anyway: set its account as owing with no line, as after a cut to 0.
    pipe.kv.put(0, m1, MerchantAccount(8000, outstanding=5000).encode())
    pipe.run([pt.advance("a1", "m2", 10.0, T0)], T0)
    assert m2 in pipe.kv.data
    pass_days(pipe, 1, 25)
    retry = pipe.run([pt.advance("a1", "m2", 10.0, T0)], T0 + 25 * DAY)
    assert not pipe.records("advance-decisions", retry)  # recognised: nothing sent again
    pass_days(pipe, 26, 45)  # past the settlement period (30 d) after the advance, and the lateness
    assert tombstoned(pipe, m2) and m1 in pipe.kv.data
    assert pipe.proc.credit.merchant_view("m1", None)["credit_outstanding"] == 50.0
