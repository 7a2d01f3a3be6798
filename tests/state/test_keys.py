"""The registry of state key kinds, and a worker's keys of lost partitions leaving its memory."""

from __future__ import annotations

from types import SimpleNamespace

import orjson

from streamrisk.core.processor import Processor
from streamrisk.core.records import Message
from streamrisk.runtime.faust.app import FaustKV
from streamrisk.settings import DAY_MS, Settings
from streamrisk.state import keys
from streamrisk.state.kv import SEP

T0 = 1_800_000_000_000
SETTINGS = Settings(partitions=4)


def test_a_keys_kind_and_entity_come_from_the_registry() -> None:
    assert keys.kind_of(b"cu" + SEP + b"u1") == keys.CREDIT_USER
    assert keys.kind_of(b"ox" + SEP + b"m1" + SEP + b"3") == keys.ORDER_INDEX
    assert keys.kind_of(b"no-separator") == b""
    assert keys.entity_of(b"u" + SEP + b"u1" + SEP + b"7") == "u1"
    assert keys.entity_of(b"a" + SEP + b"merchant" + SEP + b"m9" + SEP + b"RULE") == "m9"
    assert keys.entity_of(b"zz" + SEP + b"x") is None


def faust_kv() -> FaustKV:
    # Faust's memory store: its dict, and the changelog partition of each key its recovery wrote.
    store = SimpleNamespace(data={}, _key_partition={})
    kv = FaustKV(SimpleNamespace(data=store), SETTINGS.partitions)  # type: ignore[arg-type]
    kv.bind()
    return kv


def traffic(n: int) -> list[Message]:
    """Users paying merchants, each on the partition Kafka's partitioner gives its key; one credit
    payment and a chargeback before its payment per ten users, so every kind of key is written."""
    out = []
    for i in range(n):
        user, merchant, ts = f"u{i}", f"m{i % 7}", T0 + i * 1000
        value = {"event_id": f"p{i}", "ts": ts, "user_id": user, "merchant_id": merchant, "amount": 10.0,
                 "currency": "CNY", "method": "credit_line" if i % 10 == 0 else "card", "device_id": "d"}
        p = keys.id_partition(user, SETTINGS.partitions)
        if i % 10 == 3:
            cb = {"event_id": f"cb{i}", "ts": ts, "payment_id": f"never{i}", "user_id": user,
                  "merchant_id": merchant, "amount": 1.0, "currency": "CNY", "reason": "fraud"}
            out.append(Message("chargebacks", p, i, user.encode(), orjson.dumps(cb)))
        out.append(Message("payments", p, i, user.encode(), orjson.dumps(value)))
    return out


def test_a_worker_drops_the_keys_of_partitions_it_lost_and_keeps_the_others() -> None:
    kv = faust_kv()
    proc = Processor(SETTINGS, kv, check_partitions=True)
    msgs = traffic(200)
    for i in range(0, len(msgs), 50):
        proc.process(msgs[i:i + 50], T0 + DAY_MS)
        proc.flush_state()
    # The users' side of a worker: state, payment index, credit accounts, held chargebacks.
    assert {keys.kind_of(k) for k in kv.data} >= {keys.USER, keys.PAYMENT_INDEX, keys.CREDIT_USER,
                                                   keys.EARLY_CHARGEBACK}
    before = dict(kv.data)
    by_partition = {p: {k for k in before if keys.id_partition(keys.entity_of(k), 4) == p} for p in range(4)}
    assert all(by_partition.values())
    proc.forget()  # as on revocation
    kv.take()  # the batches' changelog records, sent
    kv.keep_partitions({0, 2})  # the new assignment
    assert set(kv.data) == by_partition[0] | by_partition[2]
    assert all(kv.data[k] == before[k] for k in kv.data)  # kept as they were
    assert kv.dropped == len(by_partition[1]) + len(by_partition[3])
    assert kv.take() == []  # no tombstones: the changelog keeps them for the partitions' new owners
    # A user of a kept partition is rebuilt from what stayed, with every payment.
    kept = next(f"u{i}" for i in range(200) if keys.id_partition(f"u{i}", 4) == 0)
    assert proc.users.get(kept).features()["payment_count_24h"] == 1


def test_a_deleted_key_leaves_the_stores_partition_map_too() -> None:
    kv = faust_kv()
    kv.key_partition[b"u" + SEP + b"r"] = 1  # restored from the changelog
    kv.data[b"u" + SEP + b"r"] = b"{}"
    kv.delete(1, b"u" + SEP + b"r")
    assert not kv.key_partition and not kv.data
    assert kv.take() == [(1, b"u" + SEP + b"r", None)]
