"""Hostile input through the worker's core in-process: every invalid record dead-lettered once with a
reason, every valid payment decided once, nothing raised (the broker version: tests/integration)."""

from __future__ import annotations

from collections import Counter

from streamrisk.core.partitioning import kafka_partition
from streamrisk.core.processor import Processor
from streamrisk.core.records import Message
from streamrisk.settings import Settings
from streamrisk.state.kv import DictKV
from tests.hostile import Hostile

NOW = 1_800_000_000_000


def test_hostile_stream_is_sorted_into_decisions_and_dead_letters() -> None:
    settings = Settings()
    proc = Processor(settings, DictKV(), check_partitions=True)
    sent = Hostile(seed=11, now_ms=NOW, partitions=settings.partitions).stream(6000, 1500, 400)
    msgs = []
    for offset, s in enumerate(sent):
        partition = s.partition
        if partition is None:
            partition = kafka_partition(s.key, settings.partitions) if s.key else 0
        msgs.append(Message(s.topic, partition, offset, s.key, s.value))
    out = []
    for i in range(0, len(msgs), 500):
        out += proc.run_local(msgs[i:i + 500], now_ms=NOW)

    letters = [o.value for o in out if o.topic == "dead-letters"]
    invalid = {i for i, s in enumerate(sent) if not s.valid}
    assert len(invalid) >= 3000 and {s.kind for s in sent} >= {"mispartitioned", "deep nesting"}
    assert Counter(d["offset"] for d in letters) == Counter(invalid), [
        (sent[d["offset"]].kind, d["error"]) for d in letters if d["offset"] not in invalid
    ][:5]
    assert all(d["error"] for d in letters)
    decided = Counter(o.value["event_id"] for o in out if o.topic == "risk-decisions")
    expected = Counter(s.event_id for s in sent if s.valid and s.topic == "payments")
    assert decided == expected
    assert proc.stats()["failed_records"] == 0
    assert proc.stats()["mispartitioned"] == sum(s.kind == "mispartitioned" for s in sent)
