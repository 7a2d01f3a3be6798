"""Prometheus metrics of a worker, through prometheus-client.

The processor's counters are read at scrape time by a collector (no extra work per event). What only
exists per batch is observed once per batch, by an observer the batch runner calls after each batch
(`observe_batch`, runner.BatchRunner.batch_observers): batch size and processing time, and for each
payment the time from its record's timestamp (set by the producer or the broker, unlike the event time
`ts`) to its decision, handed to the producer. Lag, recovery time and in-memory entities are read
from the consumer and the stores when scraped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import faust
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from ..core.processor import Processor
from ..core.records import Message

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5,
    0.75, 1.0, 2.5, 5.0, 10.0, 30.0,
)
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
BATCH_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


SHADOW_DOCS = {
    "streamrisk_shadow_decisions": "Payments by the live ruleset's action and the shadow ruleset's action",
    "streamrisk_shadow_reasons": "Reason codes given by the live and by the shadow ruleset",
}


class _CounterCollector:
    """The processor's counters as Prometheus counters and gauges, read when scraped."""

    def __init__(self, processor: Processor) -> None:
        self.p = processor

    def collect(self) -> Iterator[Metric]:
        p, c = self.p, self.p.counters

        def labelled(name: str, doc: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
            fam = CounterMetricFamily(f"streamrisk_{name}", doc, labels=[label])
            for k, v in sorted(values.items()):
                fam.add_metric([k], v)
            return fam

        def plain(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"streamrisk_{name}", doc, value=value)

        yield labelled("events_consumed", "Records consumed per input topic", "topic", c.consumed)
        yield labelled(
            "dead_letters", "Records sent to dead-letters per reason class", "reason_class",
            c.dead_letter_classes,
        )
        yield plain("duplicates", "Events dropped as duplicates by event_id", c.duplicates)
        yield labelled("decisions", "Risk decisions per action", "action", c.decisions)
        yield labelled("alerts", "Fraud alerts per reason code", "reason", c.alerts)
        yield labelled("credit_adjustments", "Credit adjustments per kind", "kind", adjustments(p))
        yield labelled("advance_decisions", "Merchant advance decisions per action", "action",
                       dict(getattr(p.credit, "advances", None) or {}))
        yield plain("alerts_suppressed", "Alert reasons suppressed by the dedupe window",
                    p.alert_gate.suppressed)
        yield plain("late_events", "Events applied out of order",
                    p.users.late_events + p.merchants.late_events)
        yield plain("too_old_events", "Events older than every window (ignored)",
                    p.users.too_old_events + p.merchants.too_old_events)
        yield plain("chargebacks_matched", "Chargebacks that found their payment", c.chargebacks_matched)
        yield plain("chargebacks_unmatched", "Chargebacks whose payment was not (yet) indexed",
                    c.chargebacks_unmatched)
        entities = GaugeMetricFamily("streamrisk_entities_in_memory", "Entities held in memory",
                                     labels=["kind"])
        entities.add_metric(["user"], len(p.users.slots))
        entities.add_metric(["merchant"], len(p.merchants.slots))
        yield entities
        # A shadow ruleset's agreement with the live one (rules/shadow.py), by action and by reason.
        tally = p.shadow.tally
        if tally is not None:
            shadow: dict[str, CounterMetricFamily] = {}
            for name, labels, value in tally.samples():
                fam = shadow.get(name)
                if fam is None:
                    fam = shadow[name] = CounterMetricFamily(name, SHADOW_DOCS[name], labels=list(labels))
                fam.add_metric(list(labels.values()), value)
            yield from shadow.values()
        yield GaugeMetricFamily("streamrisk_merchants_in_view", "Merchant summaries held",
                                value=len(p.merchant_view))
        yield from credit_risk(p)
        rules = GaugeMetricFamily("streamrisk_ruleset_info", "The ruleset in force", labels=["version"])
        rules.add_metric([str(p.rules.ruleset.version)], 1)
        yield rules


def adjustments(processor: Processor) -> dict[str, int]:
    """Credit adjustments per kind: user limits and merchant lines (counted by reason in the credit book)."""
    book = getattr(processor, "credit", None)
    if book is None:
        return {}
    return {
        "user_limit": sum(getattr(book, "limit_adjustments", {}).values()),
        "merchant_line": sum(getattr(book, "line_adjustments", {}).values()),
    }


def credit_risk(processor: Processor) -> Iterator[Metric]:
    """Expected loss (pd x lgd x exposure), exposure and accounts by segment and PD band (credit book)."""
    book = getattr(processor, "credit", None)
    if book is None:
        return
    labels = ["segment", "pd_band"]
    loss = GaugeMetricFamily("streamrisk_credit_expected_loss", "Expected loss (PD x LGD x exposure)",
                             labels=labels)
    exposure = GaugeMetricFamily("streamrisk_credit_exposure", "Credit exposure", labels=labels)
    accounts = GaugeMetricFamily("streamrisk_credit_priced_accounts", "Credit accounts priced", labels=labels)
    for segment, band, n, exp, el in book.expected_loss():
        loss.add_metric([segment, band], el)
        exposure.add_metric([segment, band], exp)
        accounts.add_metric([segment, band], n)
    yield from (loss, exposure, accounts)


class WorkerMetrics:
    """One worker's registry: scrape-time collectors plus the per-batch histograms."""

    def __init__(self, processor: Processor) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        r.register(_CounterCollector(processor))
        ProcessCollector(registry=r)
        self.batch_size = Histogram(
            "streamrisk_batch_size", "Messages per processed batch", buckets=BATCH_SIZE_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "streamrisk_batch_processing_seconds", "Processor time per batch (validate, apply, decide)",
            buckets=BATCH_SECONDS_BUCKETS, registry=r,
        )
        self.latency = Histogram(
            "streamrisk_decision_latency_seconds",
            "Payment record timestamp to its decision, as seen by the worker",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.forward_seconds = Histogram(
            "streamrisk_http_forward_seconds", "Time to answer a request forwarded to the key's owner",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.lag = Gauge("streamrisk_consumer_lag", "Records not yet consumed per input partition",
                         ["topic", "partition"], registry=r)
        self.recovery = Gauge("streamrisk_table_recovery_seconds",
                              "Duration of the last state table recovery", registry=r)
        self.rebalancing = Gauge("streamrisk_rebalancing", "1 while the group rebalances", registry=r)
        self.ready = Gauge("streamrisk_ready", "1 when /ready answers 200", registry=r)
        # (topic, partition) -> offset of the last record processed, for the lag.
        self.processed: dict[tuple[str, int], int] = {}
        self._payments = processor.settings.topic("payments")

    def observe_batch(self, batch: Sequence[Any], processing_s: float) -> None:
        """A batch the processor processed, in `processing_s` seconds (the batch runner's observer)."""
        decided = time.time() * 1000
        self.batch_seconds.observe(processing_s)
        self.batch_size.observe(len(batch))
        payments, latency, processed = self._payments, self.latency.observe, self.processed
        # The worker hands aiokafka records (`timestamp`, ms); tests and tools hand Messages.
        stamp = "timestamp_ms" if batch and isinstance(batch[0], Message) else "timestamp"
        for m in batch:
            processed[m.topic, m.partition] = m.offset
            if m.topic == payments:
                sent = getattr(m, stamp)
                if sent:
                    latency(max(0.0, decided - sent) / 1000)

    async def refresh(self, app: faust.App, input_topics: set[str], ready: Callable[[], bool]) -> None:
        """Update what is read from the consumer when scraped: lag per partition, recovery, state."""
        consumer = app.consumer
        self.lag.clear()
        inputs = [tp for tp in consumer.assignment() if tp.topic in input_topics]
        # Before this worker processed anything there, the consumer's position stands in: the one it
        # knows now, never asked of the broker (a scrape must answer while the broker is away).
        known = getattr(consumer, "known_positions", None)
        positions = known(inputs) if known is not None else {}
        for tp in inputs:
            highwater = consumer.highwater(tp)
            done = self.processed.get((tp.topic, tp.partition))
            position = done + 1 if done is not None else positions.get(tp)
            if position is not None and highwater is not None:
                self.lag.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))
        self.recovery.set(recovery_seconds(app) or 0.0)
        self.rebalancing.set(1 if app.rebalancing else 0)
        self.ready.set(1 if ready() else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def lag_by_partition(self) -> dict[str, int]:
        """The last refreshed lag, "topic/partition" -> records, for /stats."""
        out: dict[str, int] = {}
        for metric in self.lag.collect():
            for s in metric.samples:
                out[f"{s.labels['topic']}/{s.labels['partition']}"] = int(s.value)
        return out


def recovery_seconds(app: faust.App) -> float | None:
    """How long the last table recovery took (Faust keeps both times on its Recovery service)."""
    rec: Any = app.tables.recovery
    started, ended = getattr(rec, "_recovery_started_at", None), getattr(rec, "_recovery_ended_at", None)
    if started is None or ended is None or ended < started:
        return None
    return float(ended - started)


def count(hist: Histogram) -> int:
    """How many observations a histogram holds."""
    for metric in hist.collect():
        for s in metric.samples:
            if s.name.endswith("_count"):
                return int(s.value)
    return 0


def buckets(hist: Histogram) -> list[tuple[float, int]]:
    """(upper bound, cumulative count) of each bucket; +Inf as a very large bound (JSON has no Infinity)."""
    out = []
    for metric in hist.collect():
        for s in metric.samples:
            if s.name.endswith("_bucket"):
                le = float(s.labels["le"])
                out.append((le if le != float("inf") else 1e9, int(s.value)))
    return out


def quantile(hist: Histogram, q: float) -> float | None:
    """The q-quantile of a histogram, interpolated within its bucket (as PromQL's histogram_quantile)."""
    buckets: list[tuple[float, float]] = []
    for metric in hist.collect():
        for s in metric.samples:
            if s.name.endswith("_bucket"):
                buckets.append((float(s.labels["le"]), s.value))
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            inside = count - below
            return lower + (upper - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = upper, count
    return lower
