"""Load test against running workers: synthetic traffic in, decisions and dead letters watched,
produce-to-decision latency measured per payment."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from ..credit.report import CreditWatch
from ..settings import Settings
from ..topics import merchant_risk_topic
from .produce import ProduceStats, produce, synthetic_stream
from .synthetic import CREDIT_STORIES, Mix, Traffic


@dataclass
class Watch:
    """What came out of the workers while the test ran."""

    sent_at: dict[str, float] = field(default_factory=dict)  # payment event_id -> send time
    latencies_ms: list[float] = field(default_factory=list)
    actions: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    decided: set[str] = field(default_factory=set)
    dead_letters: int = 0
    repeats: int = 0
    alerts: dict[str, int] = field(default_factory=dict)  # by reason code
    # Wall clock at which a merchant summary was read, less the event time of the merchant's newest
    # event (synthetic events carry their send time): how far behind the merchant side is.
    view_lag_ms: list[float] = field(default_factory=list)
    credit: CreditWatch = field(default_factory=CreditWatch)  # adjustments, by reason

    def on_send(self, topic: str, key: str, event_id: str | None, at: float) -> None:
        if topic == "payments" and event_id:
            self.sent_at[event_id] = at

    @property
    def decisions(self) -> int:
        return sum(self.actions.values())

    def percentile(self, q: float, values: list[float] | None = None) -> float:
        v = self.latencies_ms if values is None else values
        return float(np.percentile(v, q)) if v else float("nan")


async def watch_outputs(
    bootstrap: str,
    prefix: str,
    watch: Watch,
    stop: asyncio.Event,
    from_start: bool = True,
    summary_topic: str | None = None,
) -> None:
    """Read decisions, dead letters, alerts and merchant summaries (no consumer group) until `stop`."""
    topics = [prefix + "risk-decisions", prefix + "dead-letters", prefix + "fraud-alerts"]
    if summary_topic:
        topics.append(summary_topic)
    watch.credit.prefix = prefix
    topics += watch.credit.topics()
    since_ms = time.time() * 1000
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5)
    await consumer.start()
    try:
        tps = []
        for t in topics:
            parts = None
            for _ in range(100):
                parts = consumer.partitions_for_topic(t)
                if parts:
                    break
                await consumer._client.force_metadata_update()  # topic may not exist yet
                await asyncio.sleep(0.1)
            tps += [TopicPartition(t, p) for p in parts or ()]
        consumer.assign(tps)
        if from_start:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        dead_topic, alert_topic = topics[1], topics[2]
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50, max_records=5000)
            now = time.time()
            for tp, records in batch.items():
                if watch.credit.take(tp.topic, (r.value for r in records)):
                    continue
                if tp.topic == dead_topic:
                    watch.dead_letters += len(records)
                    continue
                if tp.topic == alert_topic:
                    for r in records:
                        for reason in orjson.loads(r.value)["reasons"]:
                            watch.alerts[reason] = watch.alerts.get(reason, 0) + 1
                    continue
                if tp.topic == summary_topic:
                    for r in records:
                        summary = orjson.loads(r.value)  # [schema, as_of, ...] (merchant_view.py)
                        as_of = summary[1] if isinstance(summary, list) else summary["as_of"]
                        if as_of >= since_ms:  # live traffic only, not history or warm-up
                            watch.view_lag_ms.append(now * 1000 - as_of)
                    continue
                for r in records:
                    d = orjson.loads(r.value)
                    eid = d["event_id"]
                    if eid in watch.decided:
                        watch.repeats += 1
                        continue
                    watch.decided.add(eid)
                    watch.actions[d["action"]] = watch.actions.get(d["action"], 0) + 1
                    for reason in d["reasons"]:
                        watch.reasons[reason] = watch.reasons.get(reason, 0) + 1
                    sent = watch.sent_at.get(eid)
                    if sent is not None:
                        watch.latencies_ms.append((now - sent) * 1000)
    finally:
        await consumer.stop()


@dataclass
class LoadtestResult:
    produced: ProduceStats
    watch: Watch
    warmup_s: float
    warmup_decisions: int = 0

    def summary(self) -> str:
        w, p = self.watch, self.produced
        rate = p.total / p.elapsed_s if p.elapsed_s else 0.0
        lines = [
            "StreamRisk summary",
            f"  events sent         {p.total} in {p.elapsed_s:.1f} s ({rate:.0f}/s)",
        ]
        for topic in ("payments", "orders", "repayments", "chargebacks"):
            lines.append(f"    {topic:<17} {p.sent.get(topic, 0)}")
        lines.append(f"    malformed         {p.malformed}")
        lines.append(f"  decisions           {w.decisions} (incl. {self.warmup_decisions} warm-up)")
        for action in ("approve", "review", "decline"):
            lines.append(f"    {action:<17} {w.actions.get(action, 0)}")
        if w.reasons:
            top = ", ".join(f"{k}={v}" for k, v in sorted(w.reasons.items(), key=lambda kv: -kv[1]))
            lines.append(f"  reasons             {top}")
        if w.alerts:
            top = ", ".join(f"{k}={v}" for k, v in sorted(w.alerts.items(), key=lambda kv: -kv[1]))
            lines.append(f"  fraud alerts        {top}")
        lines += w.credit.summary_lines()
        lines.append(f"  dead letters        {w.dead_letters}")
        lines.append(f"  repeated decisions  {w.repeats}")
        missing = sum(1 for e in w.sent_at if e not in w.decided)
        lines.append(f"  payments undecided  {missing}")
        lines.append(
            f"  latency produce->decision  p50 {w.percentile(50):.1f} ms  "
            f"p99 {w.percentile(99):.1f} ms  max {w.percentile(100):.1f} ms  (n={len(w.latencies_ms)})"
        )
        if w.view_lag_ms:
            lag = w.view_lag_ms
            lines.append(
                f"  merchant view lag          p50 {w.percentile(50, lag):.1f} ms  "
                f"p99 {w.percentile(99, lag):.1f} ms  (n={len(lag)}; event -> summary on every worker)"
            )
        return "\n".join(lines)


def _progress(watch: Watch, started: float) -> Callable[[], None]:
    tty = sys.stderr.isatty()
    last = [0.0]

    def show() -> None:
        now = time.monotonic()
        if not tty and now - last[0] < 5:
            return
        last[0] = now
        line = (
            f"  {now - started:5.1f}s  sent {len(watch.sent_at):>7} payments  "
            f"decided {watch.decisions:>7}  p50 {watch.percentile(50):6.1f} ms  "
            f"dead letters {watch.dead_letters}"
        )
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    return show


async def run_loadtest(
    bootstrap: str,
    *,
    prefix: str = "",
    app_id: str = "streamrisk",
    rate: float = 500.0,
    duration_s: float = 30.0,
    users: int = 2000,
    merchants: int = 200,
    malformed: float = 0.002,
    bursts: float = 0.002,
    seed: int = 7,
    ready_timeout_s: float = 60.0,
    drain_timeout_s: float = 15.0,
) -> LoadtestResult:
    """Warm up until a worker answers, run traffic for `duration_s`, drain, and measure."""
    watch = Watch()
    stop = asyncio.Event()
    summaries = merchant_risk_topic(Settings(topic_prefix=prefix, app_id=app_id))
    watcher = asyncio.create_task(watch_outputs(bootstrap, prefix, watch, stop, summary_topic=summaries))
    run_id = f"{seed}-{int(time.time())}"
    mix = Mix(malformed=malformed, bursts=bursts, credit_stories=CREDIT_STORIES)
    traffic = Traffic(users, merchants, seed=seed, mix=mix, run_id=run_id)

    started = time.monotonic()
    # Warm-up: one payment at a time until a worker has joined and decided it.
    warm = Traffic(10, 10, seed=seed + 1, run_id=run_id + "-warmup")
    while not watch.decisions:
        if time.monotonic() - started > ready_timeout_s:
            stop.set()
            await watcher
            raise TimeoutError(f"no decision within {ready_timeout_s:.0f} s: is a worker running?")
        await produce(bootstrap, [warm.payment(int(time.time() * 1000))], rate=100, topic_prefix=prefix)
        await asyncio.sleep(0.5)
    warmup_s = time.monotonic() - started
    watch.latencies_ms.clear()
    warmup_decisions = watch.decisions

    show = _progress(watch, time.monotonic())

    async def ticker() -> None:
        while not stop.is_set():
            show()
            await asyncio.sleep(0.5)

    tick_task = asyncio.create_task(ticker())
    stats = await produce(
        bootstrap,
        synthetic_stream(traffic),
        rate=rate,
        duration_s=duration_s,
        topic_prefix=prefix,
        on_send=watch.on_send,
    )
    deadline = time.monotonic() + drain_timeout_s
    while time.monotonic() < deadline and any(e not in watch.decided for e in watch.sent_at):
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(watcher, tick_task)
    show()
    if sys.stderr.isatty():
        print(file=sys.stderr)
    return LoadtestResult(stats, watch, warmup_s, warmup_decisions)


def traffic_options(args: Any) -> dict[str, Any]:
    """The `run_loadtest` keywords given by the CLI's traffic flags (loadtest and demo share them)."""
    return {
        "rate": args.rate,
        "duration_s": args.duration,
        "users": args.users,
        "merchants": args.merchants,
        "malformed": args.malformed,
        "bursts": args.bursts,
        "seed": args.seed,
    }
