"""One bad record never costs another anything: whatever processing one record raises, it is
dead-lettered with the exception named, and the batch and the state go on as if it had not come."""

from __future__ import annotations

import orjson
import pytest

from streamrisk.core.processor import Processor
from streamrisk.core.records import Message
from streamrisk.features.entities import UserState
from streamrisk.settings import DAY_MS, Settings
from streamrisk.state.kv import DictKV
from streamrisk.state.payment_index import PaymentIndex

T0 = 1_800_000_000_000
NOW = T0 + DAY_MS
SETTINGS = Settings()


def pay(eid: str, user: str, ts: int, amount: float = 10.0) -> dict:
    return {"event_id": eid, "ts": ts, "user_id": user, "merchant_id": "m1", "amount": amount,
            "currency": "CNY", "method": "card", "device_id": "d1"}


def msgs(*records: dict) -> list[Message]:
    return [Message("payments", 0, i, r["user_id"].encode(), orjson.dumps(r)) for i, r in enumerate(records)]


def decided(out: list) -> list[str]:
    return [o.value["event_id"] for o in out if o.topic == "risk-decisions"]


@pytest.fixture
def poisoned_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the window engine for one event, after it has half-updated the entity."""
    real = UserState.apply

    def apply(self: UserState, ev) -> None:  # type: ignore[no-untyped-def]
        if ev.event_id == "ppoison":
            self.latest = 10**15  # partial damage before the raise
            raise OverflowError("int too big to convert")
        real(self, ev)

    monkeypatch.setattr(UserState, "apply", apply)


def test_a_record_that_raises_is_dead_lettered_and_its_neighbours_decided(poisoned_apply: None) -> None:
    kv = DictKV()
    proc = Processor(SETTINGS, kv)
    batch = msgs(pay("a", "u", T0), pay("poison", "u", T0 + 1), pay("b", "u", T0 + 2), pay("c", "v", T0))
    out = proc.process(batch, now_ms=NOW)
    proc.flush_state()
    assert decided(out) == ["a", "b", "c"]
    letters = [o.value for o in out if o.topic == "dead-letters"]
    assert len(letters) == 1 and letters[0]["offset"] == 1
    assert "processing failed with OverflowError: int too big to convert" in letters[0]["error"]
    assert proc.stats()["failed_records"] == 1 and proc.stats()["dead_letters"] == 1
    # The half-applied event left no trace: memory equals the table, without it.
    user = proc.users.get("u")
    assert user.latest == T0 + 2 and user.features()["payment_count_5m"] == 2
    fresh = Processor(SETTINGS, kv).users.get("u")
    assert fresh.features() == user.features()


def test_a_replayed_failed_record_fails_again_and_is_not_taken_for_a_duplicate(poisoned_apply: None) -> None:
    proc = Processor(SETTINGS, DictKV())
    proc.process(msgs(pay("poison", "u", T0)), now_ms=NOW)
    again = proc.process(msgs(pay("poison", "u", T0)), now_ms=NOW)
    assert [o.topic for o in again] == ["dead-letters"]
    assert proc.counters.duplicates == 0


def test_outputs_of_a_record_that_raises_late_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    real = PaymentIndex.add

    def add(self: PaymentIndex, partition: int, user_id: str, payment_id: str, *rest: object) -> None:
        if payment_id == "late-bug":
            raise KeyError("index")
        real(self, partition, user_id, payment_id, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(PaymentIndex, "add", add)
    proc = Processor(SETTINGS, DictKV())
    out = proc.process(msgs(pay("late-bug", "u", T0), pay("ok", "u", T0 + 1)), now_ms=NOW)
    # The failing payment's decision (made before the raise) is not sent: it is dead-lettered instead.
    assert decided(out) == ["ok"]
    assert sum(1 for o in out if o.topic == "dead-letters") == 1
    assert not [o for o in out if o.topic.endswith("merchant-events") and b"late-bug" in o.value]


@pytest.mark.parametrize(
    "record",
    [
        pay("big", "u", T0, amount=1e17),  # overflowed the window engine's int64 columns
        pay("sep", "X\x1f0", T0),  # its meta key equalled user X's first chunk key
    ],
)
def test_inputs_that_crashed_the_worker_are_dead_lettered(record: dict) -> None:
    proc = Processor(SETTINGS, DictKV())
    out = proc.process(msgs(pay("x", "X", T0), record, pay("y", "X", T0 + 1)), now_ms=NOW)
    proc.flush_state()
    assert decided(out) == ["x", "y"]
    assert [o.value["offset"] for o in out if o.topic == "dead-letters"] == [1]
    assert proc.stats()["failed_records"] == 0  # rejected by validation, not by luck


def test_record_on_the_wrong_partition_is_dead_lettered_when_checked() -> None:
    from streamrisk.core.partitioning import kafka_partition

    proc = Processor(SETTINGS, DictKV(), check_partitions=True)
    right = kafka_partition(b"u", SETTINGS.partitions)
    wrong = (right + 1) % SETTINGS.partitions
    raw = orjson.dumps(pay("a", "u", T0))
    out = proc.process([Message("payments", wrong, 5, b"u", raw), Message("payments", right, 6, b"u", raw)],
                       now_ms=NOW)
    assert decided(out) == ["a"]
    [letter] = [o.value for o in out if o.topic == "dead-letters"]
    assert letter["partition"] == wrong and "murmur2_random" in letter["error"]
    assert proc.stats()["mispartitioned"] == 1


def test_a_merchant_summary_after_a_failure_is_the_persisted_state(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamrisk.features.entities import MerchantState

    real = MerchantState.apply

    def apply(self: MerchantState, ev) -> None:  # type: ignore[no-untyped-def]
        if ev.event_id == "opoison":
            self.latest = 10**15
            raise ValueError("bug")
        real(self, ev)

    monkeypatch.setattr(MerchantState, "apply", apply)
    proc = Processor(SETTINGS, DictKV())

    def order(eid: str, ts: int) -> Message:
        value = {"event_id": eid, "ts": ts, "order_id": eid, "merchant_id": "m1", "user_id": "u",
                 "amount": 5.0, "currency": "CNY", "status": "placed"}
        return Message("orders", 0, ts - T0, b"m1", orjson.dumps(value))

    out = proc.run_local([order("ok", T0), order("poison", T0 + 1)], now_ms=NOW)
    assert [o.value["offset"] for o in out if o.topic == "dead-letters"] == [1]
    view = proc.merchant_view.get("m1", {})
    assert view["order_count_24h"] == 1  # the summary holds the first order, and no trace of the second
