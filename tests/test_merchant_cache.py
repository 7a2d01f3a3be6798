"""A bounded merchant view (STREAMRISK_MERCHANT_CACHE_SIZE): a few merchants' features in memory, every
summary in a store (RocksDB on the worker), and a miss answered from the store exactly as the whole table
in memory would answer it, so no decision changes because of a miss."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamrisk.core.merchant_view import BoundedMerchantView, DictSummaryStore, MerchantView, encode_summary
from streamrisk.core.processor import Processor
from streamrisk.core.records import Message
from streamrisk.loadgen import patterns
from streamrisk.loadgen.patterns import DAY
from streamrisk.loadgen.synthetic import Traffic
from streamrisk.runtime.summary_store import RocksSummaryStore, summary_store_path
from streamrisk.settings import Settings, SettingsError
from streamrisk.state.kv import DictKV

NAMES = ("order_count_24h", "refund_rate_24h", "chargeback_rate_30d")
NOW = 1_800_000_000_000


def stores(tmp_path: Path) -> dict[str, Callable[[], Any]]:
    return {"dict": DictSummaryStore, "rocksdb": lambda: RocksSummaryStore(tmp_path / "summaries")}


@pytest.mark.parametrize("kind", ["dict", "rocksdb"])
def test_a_bounded_view_answers_every_lookup_as_the_whole_table_does(kind: str, tmp_path: Path) -> None:
    whole = MerchantView(NAMES)
    bounded = BoundedMerchantView(NAMES, 16, stores(tmp_path)[kind]())
    rng = random.Random(5)
    merchants = [f"m{i}" for i in range(400)]
    # Summaries, summaries replaced, tombstones, a stray record and a summary of other windows, mixed
    # with lookups (a lookup between two summaries of a merchant must see the newer one).
    for step in range(3000):
        m = rng.choice(merchants)
        roll = rng.random()
        if roll < 0.45:
            value: bytes | None = encode_summary(whole.schema, step, {
                "order_count_24h": rng.randrange(50), "refund_rate_24h": rng.random(),
                "chargeback_rate_30d": rng.choice([0, 0.5, 1e-9])})
        elif roll < 0.5:
            value = None
        elif roll < 0.52:
            value = rng.choice([b"not json", encode_summary("deadbeef", step, {"x": 1.0})])
        else:
            assert bounded.get(m) == whole.get(m), m
            continue
        whole.put(m, value)
        bounded.put(m, value)
    assert bounded.bad == whole.bad and bounded.bad > 0
    for m in rng.sample(merchants, len(merchants)):
        assert bounded.get(m, {"unknown": 1.0}) == whole.get(m, {"unknown": 1.0}), m
    assert len(bounded) == len(whole) > 16 and set(bounded) == set(whole)
    assert bounded.cached <= 16
    assert bounded.misses > len(merchants)  # most lookups were misses: the store answered them


def test_a_merchant_with_no_summary_is_remembered_as_such_until_one_comes(tmp_path: Path) -> None:
    view = BoundedMerchantView(NAMES, 4, RocksSummaryStore(tmp_path / "s"))
    assert view.get("new", None) is None and view.get("new", None) is None
    assert view.misses == 1  # the second lookup did not read the store
    view.put("new", encode_summary(view.schema, 1, dict.fromkeys(NAMES, 2)))
    assert view.get("new") == dict.fromkeys(NAMES, 2)


def test_the_disk_store_is_rebuilt_empty_at_each_start(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, merchant_cache_size=10, web_port=7001)
    path = summary_store_path(settings)
    first = RocksSummaryStore(path)
    first.put("m1", b'["x"]')
    first.close()
    # The broadcast reader reads the topic from the beginning again: nothing left may be stale.
    again = RocksSummaryStore(path)
    assert again.get("m1") is None and list(again.keys()) == []
    assert summary_store_path(settings.replace(group_instance_id="w2")) != path  # one per worker


def test_the_cache_size_setting_is_read_and_checked() -> None:
    assert Settings.from_env({"STREAMRISK_MERCHANT_CACHE_SIZE": "5000"}).merchant_cache_size == 5000
    assert Settings().merchant_cache_size == 0
    with pytest.raises(SettingsError, match="STREAMRISK_MERCHANT_CACHE_SIZE"):
        Settings(merchant_cache_size=-1).check()


def _stream() -> list[Message]:
    """Ten days of traffic at 300 merchants (the shop patterns move merchant features that the score
    reads), in event-time order."""
    traffic = Traffic(200, 300, seed=3, run_id="cache")
    recs: list[tuple[int, str, str, Any]] = []
    for i in range(3000):
        topic, key, value = traffic.next(NOW - 10 * DAY + i * (10 * DAY // 3000))
        recs.append((value["ts"], topic, key, value))
    for pattern in (patterns.refund_spike("shop-spike", NOW), patterns.bust_out("shop-bust", NOW)):
        recs += [(v["ts"], t, k, v) for t, k, v in pattern]
    recs.sort(key=lambda r: r[0])
    return [Message(t, 0, i, k.encode(), orjson.dumps(v)) for i, (_, t, k, v) in enumerate(recs)]


def _decide(settings: Settings, stream: list[Message], store: Any = None) -> tuple[list, list, Processor]:
    """The decisions (without their wall-clock time) and the merchant features each payment read."""
    proc = Processor(settings, DictKV(), summary_store=store)
    view = proc.merchant_view
    read: list[tuple[str, Mapping[str, float] | None]] = []
    plain_get = view.get

    def get(merchant_id: str, default: Any = None) -> Any:
        got = plain_get(merchant_id, default)
        read.append((merchant_id, dict(got) if got is not None else None))
        return got

    view.get = get  # type: ignore[method-assign]
    decisions = []
    for i in range(0, len(stream), 50):
        for o in proc.run_local(stream[i:i + 50], now_ms=NOW):
            if o.topic == settings.topic("risk-decisions"):
                d = dict(o.value) if isinstance(o.value, dict) else orjson.loads(o.value)  # type: ignore[arg-type]
                del d["decided_at"]
                decisions.append(d)
    return decisions, read, proc


def test_payments_decided_on_cache_misses_get_the_same_features_and_decisions_as_with_the_whole_table(
    tmp_path: Path,
) -> None:
    stream = _stream()
    settings = Settings(partitions=1, explain_decisions=True)
    want, want_read, _ = _decide(settings, stream)
    got, got_read, proc = _decide(settings.replace(merchant_cache_size=8), stream,
                                  RocksSummaryStore(tmp_path / "summaries"))
    view = proc.merchant_view
    assert isinstance(view, BoundedMerchantView)
    assert len(want) > 1000 and any(d["score"] != want[0]["score"] for d in want)
    assert got_read == want_read  # every payment read the same merchant features, hit or miss
    assert got == want
    known = sum(f is not None for _, f in got_read)
    assert view.misses > known // 2 and known > 500  # most payments at a known merchant missed the cache
    assert len(view) > 200 and view.cached <= 8
