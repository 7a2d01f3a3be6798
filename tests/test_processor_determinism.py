"""Every output id is a function of the input stream, not of where the consumer split it into batches.

One stream (40 days of synthetic traffic with malformed records, fraud patterns for users and
merchants) is replayed through fresh processors in batches of 1 and of 500. The background sweep
works per batch, so it also runs at different points of the two replays. Merchant events forwarded by the user
side are part of the stream, placed right after the record that caused them, as the merchant's owner
would read them; only the batch boundaries differ between the two runs.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from streamrisk.core.processor import Processor
from streamrisk.core.records import Message, Out
from streamrisk.loadgen import patterns
from streamrisk.loadgen.patterns import DAY, MINUTE
from streamrisk.loadgen.synthetic import Mix, Traffic
from streamrisk.settings import Settings
from streamrisk.state.kv import DictKV

NOW = 1_800_000_000_000
# One partition (every key's murmur2 partition is 0); a short payment index so that it expires too.
SETTINGS = Settings(partitions=1, payment_index_ms=2 * DAY)
EVENTS = 2000
STEP = 40 * DAY // EVENTS


def _records() -> list[tuple[str, str, Any]]:
    """Synthetic traffic over 40 days, with user and merchant fraud patterns mixed in by ts."""
    traffic = Traffic(300, 12, seed=11, mix=Mix(malformed=0.02, bursts=0.01), run_id="det")
    recs: list[tuple[int, str, str, Any]] = []
    for i in range(EVENTS):
        t = NOW - 40 * DAY + i * STEP
        topic, key, value = traffic.next(t)
        recs.append((value["ts"] if isinstance(value, dict) else t, topic, key, value))
    for pattern in (patterns.refund_spike("shop-spike", NOW), patterns.bust_out("shop-bust", NOW),
                    patterns.velocity_burst("u-burst", NOW), patterns.card_testing("u-card", NOW),
                    patterns.chargeback_days_late("u-cb", NOW)):
        recs += [(v["ts"], t, k, v) for t, k, v in pattern]
    recs.sort(key=lambda r: r[0])
    return [(t, k, v) for _, t, k, v in recs]


def _stream(records: list[tuple[str, str, Any]]) -> list[Message]:
    """The inputs plus, after each, the merchant events it forwards (found by processing one by one)."""
    proc = Processor(SETTINGS, DictKV())
    offsets: Counter[str] = Counter()
    out: list[Message] = []

    def msg(topic: str, key: bytes, value: bytes | None) -> Message:
        offsets[topic] += 1
        return Message(topic, 0, offsets[topic], key, value)

    for topic, key, value in records:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        pending = [msg(SETTINGS.topic(topic), key.encode(), raw)]
        while pending:
            m = pending.pop(0)
            out.append(m)
            outs = proc.process([m], NOW)
            proc.flush_state()
            pending += [msg(o.topic, o.key.encode(), o.value) for o in outs
                        if o.topic == proc.t_merchant_events]
    return out


def _replay(stream: list[Message], batch: int) -> tuple[Processor, list[Out]]:
    proc = Processor(SETTINGS, DictKV())
    outs: list[Out] = []
    for i in range(0, len(stream), batch):
        got = proc.process(stream[i:i + batch], NOW)
        proc.flush_state()
        got += proc.summaries()  # the worker publishes them on a timer; here after every batch
        for o in got:
            if o.topic == proc.t_merchant_risk:  # summaries reach the view as through Kafka
                proc.on_broadcast(Message(o.topic, 0, 0, o.key.encode(), o.value))
        outs += got
    return proc, outs


def _ids(proc: Processor, outs: list[Out]) -> dict[str, list[Any]]:
    """What identifies each emitted record, per topic, in emission order."""

    def value(o: Out) -> Any:
        return orjson.loads(o.value) if isinstance(o.value, bytes) else o.value

    by_topic: dict[str, list[Any]] = {}
    for o in outs:
        v = value(o)
        if o.topic == proc.t_decisions:
            ident: Any = (v["decision_id"], v["event_id"])
        elif o.topic == proc.t_alerts:
            ident = (v["alert_id"], v["ts"], tuple(v["event_ids"]), tuple(v["reasons"]), v["severity"])
        elif o.topic == proc.t_dead:
            ident = (v["source_topic"], v["partition"], v["offset"], v["error"])
        elif o.topic == proc.t_merchant_risk:
            continue  # published on a timer by design; compared as the final view below
        elif o.topic == proc.t_merchant_events:
            # The event; a payment's decision it carries is compared as on risk-decisions, by id.
            ident = (o.key, tuple(orjson.loads(o.value)[:5]))
        else:
            ident = (o.key, o.value)
        by_topic.setdefault(o.topic, []).append(ident)
    return by_topic


def test_every_output_id_is_the_same_in_batches_of_1_and_of_500() -> None:
    stream = _stream(_records())
    one, outs_one = _replay(stream, 1)
    many, outs_many = _replay(stream, 500)
    ids_one, ids_many = _ids(one, outs_one), _ids(many, outs_many)
    # The stream exercises every kind of output, merchant alerts included.
    alerts = ids_one[one.t_alerts]
    assert {"MERCHANT_REFUND_SPIKE", "MERCHANT_BUST_OUT", "VELOCITY_5M", "CHARGEBACK"} <= {
        r for a in alerts for r in a[3]}
    assert ids_one[one.t_dead] and ids_one[one.t_decisions] and ids_one[one.t_merchant_events]
    for run in (one, many):  # idle users, their indexes and dedupe entries were swept meanwhile
        memory = run.stats()["memory"]
        assert memory["idle_entities_swept"] and memory["idle_payment_indexes_swept"]
        assert memory["alert_dedupe_entries_swept"]
    for topic in ids_one.keys() | ids_many.keys():
        assert ids_one.get(topic) == ids_many.get(topic), topic
    assert len(one.merchant_view) > 10 and one.merchant_view == many.merchant_view


def test_merchant_alert_is_named_after_the_event_that_crossed_the_threshold() -> None:
    # A refund spike (24 h refund rate 8/20), then 10 more orders bring the rate back under 0.3:
    # all within one batch, the alert is still raised, at the refund that crossed the threshold.
    records = patterns.refund_spike("shop", NOW - 30 * MINUTE)
    records += [patterns.order(f"shop:late{i}:placed", "shop", f"b{i}", 80.0, NOW - 10 * MINUTE + i)
                for i in range(10)]
    proc = Processor(SETTINGS, DictKV())
    msgs = [Message("orders", 0, i, k.encode(), orjson.dumps(v)) for i, (_, k, v) in enumerate(records)]
    outs = proc.process(msgs, NOW)
    alerts = [o.value for o in outs if o.topic == proc.t_alerts]
    assert [a["reasons"] for a in alerts] == [["MERCHANT_REFUND_SPIKE"]]
    crossing = alerts[0]["event_ids"][0]
    assert crossing.endswith(":refunded")
    assert alerts[0]["ts"] == next(v["ts"] for _, _, v in records if v["event_id"] == crossing)
    # Only events at or before the crossing one are named.
    assert all(e.startswith("shop:new") for e in alerts[0]["event_ids"])
    final = proc.merchants.get("shop").features()
    assert not proc.rules.ruleset.evaluate_merchant(final)  # uncrossed by the end of the batch


def test_a_merchant_rule_kept_true_by_late_events_alerts_once() -> None:
    # Bust-out: the forwarded chargebacks (an hour ago) reach the merchant's owner before the
    # orders of the surge (20 h to 3 h ago). Each late order keeps the rule true: one alert, at the
    # merchant's newest event time, not one per hour of the orders' own times.
    proc = Processor(SETTINGS, DictKV())
    records = patterns.bust_out("shop", NOW)
    user_side = [r for r in records if r[0] != "orders"]
    orders = [r for r in records if r[0] == "orders"]
    outs: list[Out] = []
    for part in (user_side, orders):  # the user side's forwards are processed before any order
        outs += proc.run_local([Message(SETTINGS.topic(t), 0, i, k.encode(), orjson.dumps(v))
                                for i, (t, k, v) in enumerate(part)], NOW)
    alerts = [a for a in outs if a.topic == proc.t_alerts and "MERCHANT_BUST_OUT" in a.value["reasons"]]
    assert len(alerts) == 1
    newest = max(v["ts"] for _, _, v in records)
    assert alerts[0].value["ts"] == newest
