"""/metrics: the processor's counters as read at scrape time, and the per-batch histograms."""

from __future__ import annotations

import time

import pytest
from prometheus_client import Histogram
from prometheus_client.parser import text_string_to_metric_families

from streamrisk.core.reason_class import reason_class
from streamrisk.core.records import Message
from streamrisk.settings import DAY_MS
from streamrisk.web.metrics import WorkerMetrics, count, quantile
from tests.pipeline import Pipeline

T0 = 1_800_000_000_000


def pay(eid: str, user: str, ts: int, amount: float = 10.0) -> dict:
    return {"event_id": eid, "ts": ts, "user_id": user, "merchant_id": "m1", "amount": amount,
            "currency": "CNY", "method": "card", "device_id": "d1"}


def samples(metrics: WorkerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(metrics.render().decode()):
        for s in fam.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def test_scrape_reads_the_processor_counters_and_batches_are_observed() -> None:
    pipe = Pipeline()
    metrics = WorkerMetrics(pipe.proc)
    topic = pipe.settings.topic("payments")
    # Record timestamps 2 s before the wall clock: the decision latency as the worker sees it.
    now = T0 + DAY_MS
    sent = int(time.time() * 1000) - 2000
    good = [pipe.message("payments", "u1", pay(f"p{i}", "u1", T0 + i)) for i in range(3)]
    msgs = [Message(topic, 0, m.offset, b"u1", m.value, sent) for m in good]
    msgs.append(pipe.message("payments", "u1", b"{not json"))
    msgs.append(pipe.message("payments", "u1", pay("p0", "u1", T0)))  # duplicate
    pipe.proc.run_local(msgs, now)
    metrics.observe_batch(msgs, 0.25)  # as the batch runner does after each batch
    s = samples(metrics)
    assert s["streamrisk_events_consumed_total", (("topic", topic),)] == 5
    assert sum(v for (n, _), v in s.items() if n == "streamrisk_decisions_total") == 3
    assert s["streamrisk_dead_letters_total", (("reason_class", "not_json"),)] == 1
    dups = pipe.proc.counters.duplicates
    assert dups >= 1 and s["streamrisk_duplicates_total", ()] == dups
    assert s["streamrisk_entities_in_memory", (("kind", "user"),)] == 1
    assert s["streamrisk_batch_size_count", ()] == 1 and s["streamrisk_batch_size_sum", ()] == 5
    assert s["streamrisk_batch_processing_seconds_sum", ()] == 0.25
    # Only records with a timestamp are timed (the bad one and the repeat here have none).
    assert s["streamrisk_decision_latency_seconds_count", ()] == 3
    assert count(metrics.latency) == 3
    # Decided now, so each took at least the 2 s since its timestamp.
    assert s["streamrisk_decision_latency_seconds_bucket", (("le", "1.0"),)] == 0


def test_dead_letter_reason_classes() -> None:
    assert reason_class("value is not valid JSON: unexpected character") == "not_json"
    assert reason_class("missing required field 'amount'") == "missing_field"
    assert reason_class("message key must be the record's user_id 'u1' (got b'u2')") == "wrong_key"
    assert reason_class("amount must be > 0 (got -3)") == "bad_value"
    cases = {
        "record is on partition 2 but Kafka's default partitioner puts its key on 0": "wrong_partition",
        "record is 2000000 bytes (key and value), more than the limit of 1048576": "too_large",
        "processing failed with KeyError: 'x'. This is a StreamRisk bug": "processing_failed",
    }
    for error, cls in cases.items():
        assert reason_class(error) == cls, error
    assert reason_class("rules: unknown action", ruleset=True) == "ruleset"


def test_quantile_interpolates_within_the_bucket_like_histogram_quantile() -> None:
    from prometheus_client import CollectorRegistry

    h = Histogram("h", "h", buckets=(1.0, 2.0, 4.0), registry=CollectorRegistry())
    assert quantile(h, 0.5) is None
    for v in (0.5, 1.5, 1.5, 3.0):
        h.observe(v)
    # 4 observations: rank 2 falls in (1, 2] holding 2 of them after 1 below: 1 + 1 * (1/2).
    assert quantile(h, 0.5) == 1.5
    assert quantile(h, 1.0) == 4.0


def test_a_shadow_rulesets_agreement_with_the_live_one_is_exported() -> None:
    from tests.rules.test_shadow import LIVE, SHADOW

    pipe = Pipeline()
    metrics = WorkerMetrics(pipe.proc)
    pipe.publish_rules("main", LIVE)
    pipe.publish_rules("shadow", SHADOW)
    pipe.run([("payments", "u1", pay("p1", "u1", T0, 900.0)), ("payments", "u2", pay("p2", "u2", T0))],
             now=T0 + DAY_MS)
    got = {k: v for k, v in samples(metrics).items() if k[0] == "streamrisk_shadow_decisions_total"}
    assert sum(got.values()) == 2
    assert all(dict(labels)["version"] == SHADOW["version"] for _, labels in got)


def test_advance_decisions_are_counted_per_action() -> None:
    from streamrisk.loadgen import patterns as pt

    pipe = Pipeline()
    metrics = WorkerMetrics(pipe.proc)
    pipe.run([pt.order("o:placed", "m1", "b1", 1000.0, T0),
              pt.order("o:fulfilled", "m1", "b1", 1000.0, T0 + 1, status="fulfilled"),
              pt.advance("a1", "m1", 500.0, T0 + 2), pt.advance("a2", "m1", 500.0, T0 + 3),
              pt.advance("a1", "m1", 500.0, T0 + 2)], T0 + DAY_MS)  # line 800.00; a1 sent again
    s = samples(metrics)
    assert s["streamrisk_advance_decisions_total", (("action", "approve"),)] == 1
    assert s["streamrisk_advance_decisions_total", (("action", "decline"),)] == 1


def test_expected_loss_is_exported_by_segment_and_band_as_the_credit_book_sums_it() -> None:
    pipe = Pipeline()
    metrics = WorkerMetrics(pipe.proc)
    credit = [dict(pay(f"c{i}", f"u{i}", T0 + i, 100.0 * (i + 1)), method="credit_line") for i in range(3)]
    late = {"event_id": "r0", "ts": T0 + 3600_000, "account_type": "user", "account_id": "u0", "amount": 10.0,
            "currency": "CNY", "due_ts": T0}
    pipe.run([*(("payments", p["user_id"], p) for p in credit), ("repayments", "u0", late)], now=T0 + DAY_MS)
    s = samples(metrics)
    book = pipe.proc.credit
    rows = book.expected_loss()
    assert {r[0] for r in rows} == {"user"} and len({r[1] for r in rows}) == 2  # u0 is in a riskier band
    for segment, band, n, exposure, loss in rows:
        labels = (("pd_band", band), ("segment", segment))
        assert s["streamrisk_credit_expected_loss", labels] == loss
        assert s["streamrisk_credit_exposure", labels] == exposure
        assert s["streamrisk_credit_priced_accounts", labels] == n
    # Every account's own pd x lgd x outstanding, from the table, sums to what is exported.
    views = [book.user_view(f"u{i}") for i in range(3)]
    assert sum(r[3] for r in rows) == sum(v["credit_outstanding"] for v in views) == 590.0
    own = sum(round(v["pd"] * 0.6 * v["credit_outstanding"], 2) for v in views)
    assert sum(r[4] for r in rows) == pytest.approx(own)
