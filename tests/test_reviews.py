"""The analysts' review queue in the processor: payments decided `review` open cases, oldest first; an
analyst's resolution (a control event) resolves its case once per control id, with an audit trail, and
may override the user's credit limit; bad control events are dead-lettered; the queue is state (it is
rebuilt from the table by a new processor)."""

from __future__ import annotations

from typing import Any

import orjson

from streamrisk.core.processor import Processor
from streamrisk.core.records import Message
from streamrisk.credit import user as uc
from streamrisk.credit.book import USER_KIND
from streamrisk.settings import DAY_MS, Settings
from streamrisk.state.kv import SEP, DictKV
from streamrisk.state.reviews import case_key
from tests.test_replay import PAYMENT_ONLY_RULES, payment

T0 = 1_800_000_000_000
NOW = T0 + DAY_MS
SETTINGS = Settings(partitions=1)


class Desk:
    """A processor fed payments and control events, one offset per message."""

    def __init__(self, kv: DictKV | None = None) -> None:
        self.kv = kv or DictKV()
        self.proc = Processor(SETTINGS, self.kv, PAYMENT_ONLY_RULES)
        self.offset = 0
        self.now = NOW

    def feed(self, topic: str, key: str | bytes, value: Any, offset: int | None = None) -> list[Any]:
        if offset is None:
            self.offset += 1
            offset = self.offset
        raw = value if value is None or isinstance(value, bytes) else orjson.dumps(value)
        k = key if isinstance(key, bytes) else key.encode()
        return self.proc.run_local([Message(topic, 0, offset, k, raw)], self.now)

    def pay(self, eid: str, user: str, ts: int, amount: float) -> list[Any]:
        t, k, v = payment(eid, user, ts, amount)
        return self.feed(SETTINGS.topic(t), k, v)

    def resolve(self, payment_id: str, user: str, control_id: str = "c1", **kw: Any) -> list[Any]:
        body = {"control_id": control_id, "user_id": user, "payment_id": payment_id, "resolution": "fraud",
                "analyst": "ana", "note": "stolen card", "action": None, "limit": None, "ts": NOW, **kw}
        return self.feed(self.proc.t_reviews, user, body, kw.pop("offset", None))

    def queue(self) -> list[tuple[str, str]]:
        cases, total = self.proc.reviews.pending(100)
        assert total == len(cases)
        return [(c["user_id"], c["payment_id"]) for c in cases]

    def dead(self, outs: list[Any]) -> list[dict[str, Any]]:
        return [o.value for o in outs if o.topic == SETTINGS.topic("dead-letters")]


def test_review_decisions_wait_oldest_first_and_leave_when_resolved() -> None:
    d = Desk()
    d.pay("p-late", "u1", T0 + 3000, 35.0)  # review (MID)
    d.pay("p-ok", "u1", T0 + 1000, 5.0)  # approve: no case
    d.pay("p-early", "u2", T0 + 2000, 35.0)
    d.pay("p-first", "u3", T0 + 1500, 35.0)
    d.pay("p-declined", "u3", T0 + 1600, 45.0)  # decline: no case
    assert d.queue() == [("u3", "p-first"), ("u2", "p-early"), ("u1", "p-late")]
    outs = d.resolve("p-early", "u2", resolution="approve")
    assert d.dead(outs) == []
    assert d.queue() == [("u3", "p-first"), ("u1", "p-late")]
    case = d.proc.reviews.get("u2", "p-early")
    assert case is not None and case["status"] == "approve"
    assert case["audit"] == [{"control_id": "c1", "analyst": "ana", "resolution": "approve",
                              "note": "stolen card", "action": None, "limit": None, "resolved_at": NOW}]
    # The queue is state: a new processor on the same table lists the same, and keeps the resolution.
    again = Desk(d.kv)
    assert again.queue() == [("u3", "p-first"), ("u1", "p-late")]
    assert again.proc.reviews.get("u2", "p-early")["status"] == "approve"


def test_a_control_event_read_again_changes_nothing_a_new_one_is_audited() -> None:
    d = Desk()
    d.pay("p1", "u1", T0, 35.0)
    d.resolve("p1", "u1", "c1", resolution="approve")
    first = d.kv.get(case_key("u1", "p1"))
    duplicates = d.proc.counters.duplicates
    d.resolve("p1", "u1", "c1", resolution="approve")  # the same control event, read again
    assert d.kv.get(case_key("u1", "p1")) == first
    assert d.proc.counters.duplicates == duplicates + 1
    d.resolve("p1", "u1", "c2", resolution="fraud", analyst="bob", note="chargeback came")
    case = d.proc.reviews.get("u1", "p1")
    assert case["status"] == "fraud"
    assert [(e["control_id"], e["analyst"], e["resolution"]) for e in case["audit"]] == [
        ("c1", "ana", "approve"), ("c2", "bob", "fraud")]


def test_a_payment_read_again_keeps_its_resolved_case() -> None:
    d = Desk()
    d.pay("p1", "u1", T0, 35.0)
    d.resolve("p1", "u1")
    t, k, v = payment("p1", "u1", T0, 35.0)
    d.feed(SETTINGS.topic(t), k, v, offset=1)  # read again after a crash (same offset)
    assert d.proc.reviews.get("u1", "p1")["status"] == "fraud"
    assert d.queue() == []


def test_a_crash_that_lost_the_case_opens_it_when_the_payment_is_read_again() -> None:
    d = Desk()
    d.pay("p1", "u1", T0, 35.0)
    d.kv.delete(0, case_key("u1", "p1"))  # the index survived, the case did not
    d.proc.forget()
    t, k, v = payment("p1", "u1", T0, 35.0)
    d.feed(SETTINGS.topic(t), k, v, offset=1)
    assert d.queue() == [("u1", "p1")]


def account(d: Desk, user: str) -> uc.UserAccount:
    return uc.UserAccount.from_list(orjson.loads(d.kv.get(USER_KIND + SEP + user.encode())))


def test_overrides_adjust_the_credit_limit_once_with_their_reason() -> None:
    d = Desk()
    d.pay("p1", "u1", T0, 35.0)  # credit_line, review: draws 35
    limits = SETTINGS.topic("credit-limit-adjustments")
    outs = d.resolve("p1", "u1", "c1", action="freeze")
    [adj] = [o.value for o in outs if o.topic == limits]
    assert adj["reasons"] == ["ANALYST_OVERRIDE"] and adj["new_limit"] == 35.0
    acct = account(d, "u1")
    assert acct.status is uc.Status.FROZEN and acct.available == 0
    # A review long after does not lift an analyst's freeze.
    d.pay("p2", "u1", T0 + 60 * DAY_MS, 1.0)
    assert account(d, "u1").status is uc.Status.FROZEN
    # Read again: no second adjustment.
    again = d.resolve("p1", "u1", "c1", action="freeze", offset=2)
    assert [o for o in again if o.topic == limits] == []
    outs = d.resolve("p1", "u1", "c2", action="set_limit", limit=500, resolution="approve")
    [adj] = [o.value for o in outs if o.topic == limits]
    assert (adj["new_limit"], adj["reasons"]) == (500.0, ["ANALYST_OVERRIDE"])
    acct = account(d, "u1")
    assert acct.status is uc.Status.ACTIVE and acct.limit == 50_000
    d.resolve("p1", "u1", "c3", action="freeze")
    outs = d.resolve("p1", "u1", "c4", action="unfreeze", resolution="approve")
    [adj] = [o.value for o in outs if o.topic == limits]
    assert adj["reasons"] == ["ANALYST_OVERRIDE"]
    assert account(d, "u1").status is uc.Status.ACTIVE
    audit = d.proc.reviews.get("u1", "p1")["audit"]
    assert [(e["control_id"], e["action"], e["limit"]) for e in audit] == [
        ("c1", "freeze", None), ("c2", "set_limit", 500.0), ("c3", "freeze", None), ("c4", "unfreeze", None)]


def test_bad_control_events_are_dead_lettered_and_change_nothing() -> None:
    d = Desk()
    d.pay("p1", "u1", T0, 35.0)
    d.pay("p-ok", "u1", T0 + 1, 5.0)
    before = dict(d.kv.data)
    topic = d.proc.t_reviews
    good = {"control_id": "c1", "user_id": "u1", "payment_id": "p1", "resolution": "fraud",
            "analyst": "ana", "note": "", "action": None, "limit": None, "ts": NOW}
    cases = [
        ("u1", b"not json", "not valid JSON"),
        ("u1", {**good, "resolution": "maybe"}, "resolution must be one of"),
        ("u1", {**good, "analyst": ""}, "analyst must be a non-empty string"),
        ("u1", {**good, "action": "explode"}, "action must be one of"),
        ("u1", {**good, "action": "set_limit"}, "limit must be a number"),
        ("u1", {**good, "limit": 5}, "limit is only taken with action set_limit"),
        ("u1", {**good, "action": "set_limit", "limit": 1e308}, "limit must be at most"),
        ("u2", good, "message key must be the record's user_id"),
        ("u1", {**good, "payment_id": "p-ok"}, "no review case for payment 'p-ok'"),
        ("u1", {**good, "payment_id": "nope"}, "no review case"),
        ("u1", {**good, "extra": 1}, "unknown field"),
        ("u1", None, "empty message value"),
    ]
    for key, value, why in cases:
        [dead] = d.dead(d.feed(topic, key, value))
        assert why in dead["error"] and dead["source_topic"] == topic, (why, dead["error"])
    assert d.proc.counters.internal_rejected == len(cases)
    assert d.kv.data == before
    assert d.queue() == [("u1", "p1")]


def test_cases_expire_with_the_payment_index_horizon() -> None:
    d = Desk()
    d.pay("p1", "u1", T0, 35.0)
    d.resolve("p1", "u1")
    d.pay("p2", "u1", T0 + 1000, 35.0)
    later = T0 + SETTINGS.payment_index_ms + SETTINGS.allowed_lateness_ms + DAY_MS
    d.now = later + DAY_MS
    for i in range(200):  # batches drive the sweep over the table
        d.pay(f"q{i}", f"other{i}", later + i, 1.0)
    assert d.kv.get(case_key("u1", "p1")) is None and d.kv.get(case_key("u1", "p2")) is None
    assert d.queue() == []
    assert d.proc.reviews.swept == 2


def test_the_queue_index_is_rebuilt_from_the_table_after_the_processor_forgets() -> None:
    d = Desk()
    d.pay("p1", "u1", T0 + 2000, 35.0)
    assert d.queue() == [("u1", "p1")]
    d.proc.forget()  # a rebalance, an aborted transaction: the table may have changed under the index
    d.pay("p0", "u2", T0 + 1000, 35.0)  # opened while there is no index
    d.kv.delete(0, case_key("u1", "p1"))  # gone from the table (a roll back)
    d.proc.forget()
    assert d.queue() == [("u2", "p0")]
