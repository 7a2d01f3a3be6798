"""What came out of the workers during a load test: decisions (with produce-to-decision latency in
an HDR histogram), alerts, credit adjustments, dead letters, merchant summaries, and consumer lag
sampled over time. Reads the output topics as any downstream service would (no consumer group)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from hdrh.histogram import HdrHistogram

INPUT_TOPICS = ("payments", "orders", "repayments", "chargebacks", "advances")
# Latencies are recorded in microseconds, from 1 µs to 10 min, to 3 significant digits.
_HDR_MAX_US = 600_000_000


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, _HDR_MAX_US, 3)


@dataclass
class Second:
    """One wall-clock second of the run."""

    sent: int = 0
    payments: int = 0
    decided: int = 0
    latency: HdrHistogram = field(default_factory=new_histogram)


@dataclass
class Watch:
    """Everything read back, plus the send times it is measured against."""

    started: float = field(default_factory=time.time)
    sent_at: dict[str, float] = field(default_factory=dict)  # payment event_id -> send time
    # (merchant_id, event ts) -> send time of the merchant's event, for the summary's lag.
    merchant_sent: dict[tuple[str, int], float] = field(default_factory=dict)
    latency: HdrHistogram = field(default_factory=new_histogram)
    seconds: dict[int, Second] = field(default_factory=dict)
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)  # payment event_id -> decision
    actions: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    repeats: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    adjustments: list[dict[str, Any]] = field(default_factory=list)  # credit limit and line
    advance_actions: Counter[str] = field(default_factory=Counter)  # advance decisions by action
    advance_reasons: Counter[str] = field(default_factory=Counter)  # and by reason code
    dead_letters: Counter[str] = field(default_factory=Counter)  # by source topic
    view_lag: HdrHistogram = field(default_factory=new_histogram)
    lag: list[tuple[float, int | None, int]] = field(default_factory=list)  # (t, group lag, in flight)
    _summary_as_of: dict[str, int] = field(default_factory=dict)
    # (subject type, id) -> event times at which it defaulted: a late repayment or a chargeback.
    defaults: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def second(self, at: float) -> Second:
        sec = int(at - self.started)
        slot = self.seconds.get(sec)
        if slot is None:
            slot = self.seconds[sec] = Second()
        return slot

    def on_send(self, topic: str, value: dict[str, Any], at: float) -> None:
        """A record of the measured traffic is being sent (warm-up payments are not noted)."""
        slot = self.second(at)
        slot.sent += 1
        if topic == "payments":
            self.sent_at[value["event_id"]] = at
            slot.payments += 1
        if topic not in ("repayments", "advances"):  # neither is in the merchant's features
            self.merchant_sent.setdefault((value["merchant_id"], value["ts"]), at)
        if topic == "chargebacks":
            self.defaults.setdefault(("user", value["user_id"]), []).append(value["ts"])
            self.defaults.setdefault(("merchant", value["merchant_id"]), []).append(value["ts"])
        elif topic == "repayments" and value["ts"] > value["due_ts"]:
            self.defaults.setdefault((value["account_type"], value["account_id"]), []).append(value["ts"])

    def on_decision(self, d: dict[str, Any], now: float) -> None:
        eid = d["event_id"]
        if eid in self.decisions:
            self.repeats += 1
            return
        self.decisions[eid] = d
        self.actions[d["action"]] += 1
        self.reasons.update(d["reasons"])
        sent = self.sent_at.get(eid)
        if sent is None:
            return  # a warm-up payment
        us = max(1, min(_HDR_MAX_US, int((now - sent) * 1e6)))
        self.latency.record_value(us)
        slot = self.second(now)
        slot.decided += 1
        slot.latency.record_value(us)

    def on_summary(self, merchant_id: str, s: Any, now: float) -> None:
        # Only the first summary that reflects a newer event: later ones carry the same `as_of`
        # (the merchant's newest event time) after an older event arrived.
        # A summary is [schema, as_of, feature values...] (merchant_view.encode_summary).
        as_of = s[1] if isinstance(s, list) and len(s) > 1 else -1
        if as_of <= self._summary_as_of.get(merchant_id, -1):
            return
        self._summary_as_of[merchant_id] = as_of
        sent = self.merchant_sent.get((merchant_id, as_of))
        if sent is not None:
            self.view_lag.record_value(max(1, min(_HDR_MAX_US, int((now - sent) * 1e6))))

    @property
    def decided(self) -> int:
        return len(self.decisions)

    def undecided(self) -> int:
        return sum(1 for e in self.sent_at if e not in self.decisions)

    def in_flight(self) -> int:
        return len(self.sent_at) - sum(1 for e in self.decisions if e in self.sent_at)

    def p_ms(self, q: float, hist: HdrHistogram | None = None) -> float:
        h = self.latency if hist is None else hist
        return h.get_value_at_percentile(q) / 1000 if h.get_total_count() else float("nan")


async def _assign_all(consumer: AIOKafkaConsumer, topics: list[str], wait_s: float) -> list[TopicPartition]:
    tps: list[TopicPartition] = []
    deadline = time.monotonic() + wait_s
    cluster = consumer._client.cluster
    for t in topics:
        parts = consumer.partitions_for_topic(t)
        # The workers may not have created the topic yet, or its partitions may have no leader yet
        # (a fresh Kafka topic), which makes offset requests fail over and over.
        while time.monotonic() < deadline and (
            not parts or any((cluster.leader_for_partition(TopicPartition(t, p)) or -1) < 0 for p in parts)
        ):
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(t)
            await asyncio.sleep(0.1)
        tps += [TopicPartition(t, p) for p in parts or ()]
    return tps


async def watch_outputs(bootstrap: str, prefix: str, watch: Watch, stop: asyncio.Event,
                        summary_topic: str | None = None, ready_s: float = 60.0) -> None:
    """Read decisions, alerts, adjustments, advance decisions, dead letters and merchant summaries until
    `stop`."""
    names = {prefix + t: t for t in ("risk-decisions", "fraud-alerts", "dead-letters",
                                     "credit-limit-adjustments", "credit-line-adjustments",
                                     "advance-decisions")}
    if summary_topic:
        names[summary_topic] = "summary"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5)
    await consumer.start()
    try:
        tps = await _assign_all(consumer, list(names), ready_s)
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)  # only this run's outputs
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50, max_records=5000)
            now = time.time()
            for tp, records in batch.items():
                kind = names[tp.topic]
                if kind == "dead-letters":
                    for r in records:
                        watch.dead_letters[_dead_letter_topic(r.value, prefix)] += 1
                    continue
                for r in records:
                    try:
                        value = orjson.loads(r.value)
                    except orjson.JSONDecodeError:
                        continue  # not ours to judge; the workers never write this
                    if kind == "risk-decisions":
                        watch.on_decision(value, now)
                    elif kind == "fraud-alerts":
                        watch.alerts.append(value)
                    elif kind == "summary":
                        watch.on_summary((r.key or b"").decode(errors="replace"), value, now)
                    elif kind == "advance-decisions":
                        watch.advance_actions[value["action"]] += 1
                        watch.advance_reasons.update(value["reasons"])
                    else:
                        watch.adjustments.append(value)
    finally:
        await consumer.stop()


def _dead_letter_topic(raw: bytes, prefix: str) -> str:
    try:
        return str(orjson.loads(raw).get("source_topic", "?")).removeprefix(prefix)
    except (orjson.JSONDecodeError, AttributeError):
        return "?"


async def sample_lag(bootstrap: str, prefix: str, group: str, watch: Watch, stop: asyncio.Event,
                     every_s: float = 1.0) -> None:
    """Every `every_s`: the workers' consumer-group lag on the input topics (end offset less committed
    offset, summed) and the payments sent but not yet decided."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        tps = await _assign_all(consumer, [prefix + t for t in INPUT_TOPICS], 30.0)
        while not stop.is_set():
            group_lag: int | None = None
            with contextlib.suppress(Exception):  # a sample lost to a rebalance is just a gap
                ends = await consumer.end_offsets(tps)
                committed = await admin.list_consumer_group_offsets(group, partitions=tps)
                done = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
                group_lag = sum(max(0, end - done.get(tp, 0)) for tp, end in ends.items())
            watch.lag.append((time.time() - watch.started, group_lag, watch.in_flight()))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)
    finally:
        await consumer.stop()
        await admin.close()
