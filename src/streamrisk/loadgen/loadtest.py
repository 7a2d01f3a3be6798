"""Load test against running workers: labelled scenario traffic in, outputs watched, latency per payment
in an HDR histogram, consumer lag sampled, quality judged against the labels."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from ..core.topic_names import consumer_group, merchant_risk_topic
from ..settings import Settings
from .produce import ProduceStats, produce
from .scenarios import ScenarioTraffic, parse_mix
from .synthetic import Record, Traffic
from .watch import Watch, sample_lag, watch_outputs

#: --max sends as fast as the producer takes records: batches of up to this many per 10 ms tick.
MAX_RATE = 100_000.0


@dataclass
class LoadtestConfig:
    """What to send: `rate` events/s (None: as fast as possible) for `duration_s` seconds."""

    rate: float | None = 500.0
    duration_s: float = 60.0
    users: int = 2000
    merchants: int = 200
    days: float = 7.0
    scenario_mix: str | None = None
    malformed: float = 0.002
    seed: int = 7

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class LoadtestResult:
    config: LoadtestConfig
    produced: ProduceStats
    watch: Watch
    traffic: ScenarioTraffic
    warmup_s: float
    drained_s: float
    workers: int = 1
    broker: str = "external"
    extra: dict[str, Any] = field(default_factory=dict)
    # (topic, key, value) of every valid record sent, in order: replayed offline for the credit losses.
    sent: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)


def scenario_stream(traffic: ScenarioTraffic, watch: Watch, duration_s: float,
                    sent: list[tuple[str, str, dict[str, Any]]] | None = None) -> Iterator[Any]:
    """Records at the run's progress on the compressed clock, each noted in `watch` (and `sent`) as it
    is sent."""
    started: float | None = None
    while True:
        now = time.monotonic()
        started = now if started is None else started
        rec = traffic.next((now - started) / duration_s)
        if isinstance(rec, Record):
            watch.on_send(rec.topic, rec.value, time.time())
            if sent is not None:
                sent.append((rec.topic, rec.key, rec.value))
        yield rec


async def warm_up(bootstrap: str, prefix: str, watch: Watch, seed: int, timeout_s: float,
                  ready: Callable[[], Awaitable[bool]] | None = None) -> float:
    """One payment at a time until a worker decides one (and `ready()` holds); returns the seconds."""
    started = time.monotonic()
    warm = Traffic(10, 10, seed=seed + 1, run_id=f"warmup-{seed}-{int(time.time())}")
    while not watch.decided or (ready is not None and not await ready()):
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"no decision within {timeout_s:.0f} s: is a worker running on {bootstrap}?")
        rec = warm.payment(int(time.time() * 1000))
        await produce(bootstrap, [rec], rate=100, topic_prefix=prefix)
        await asyncio.sleep(0.5)
    return time.monotonic() - started


async def run_loadtest(
    bootstrap: str,
    config: LoadtestConfig,
    *,
    prefix: str = "",
    app_id: str = "streamrisk",
    ready: Callable[[], Awaitable[bool]] | None = None,
    ready_timeout_s: float = 90.0,
    drain_timeout_s: float = 20.0,
    console: Console | None = None,
) -> LoadtestResult:
    """Warm up until the workers answer, send for `duration_s`, drain, and return what was measured."""
    console = console or Console(stderr=True)
    mix = parse_mix(config.scenario_mix)
    watch = Watch()
    stop = asyncio.Event()
    deployment = Settings(topic_prefix=prefix, app_id=app_id)
    summaries = merchant_risk_topic(deployment)
    watcher = asyncio.create_task(watch_outputs(bootstrap, prefix, watch, stop, summary_topic=summaries))
    lagger: asyncio.Task[None] | None = None
    try:
        warmup_s = await warm_up(bootstrap, prefix, watch, config.seed, ready_timeout_s, ready)
        run_id = f"{config.seed}-{int(time.time())}"
        traffic = ScenarioTraffic(config.users, config.merchants, end_ms=int(time.time() * 1000),
                                  days=config.days, mix=mix, malformed=config.malformed, seed=config.seed,
                                  run_id=run_id)
        watch.started = time.time()
        load_start = round(os.getloadavg()[0], 2)
        lagger = asyncio.create_task(sample_lag(bootstrap, prefix, consumer_group(deployment), watch, stop))
        sent: list[tuple[str, str, dict[str, Any]]] = []
        bar, task = progress_bar(console, config.duration_s)
        with bar:
            ticker = asyncio.create_task(_tick(bar, task, watch, stop))
            produced = await produce(bootstrap, scenario_stream(traffic, watch, config.duration_s, sent),
                                     rate=config.rate or MAX_RATE, duration_s=config.duration_s,
                                     topic_prefix=prefix)
            drain_started = time.monotonic()
            deadline = drain_started + drain_timeout_s
            while time.monotonic() < deadline and watch.undecided():
                await asyncio.sleep(0.1)
            drained_s = time.monotonic() - drain_started
            await asyncio.sleep(0.5)  # alerts and adjustments trail their decisions slightly
            stop.set()
            await ticker
        return LoadtestResult(config, produced, watch, traffic, warmup_s, drained_s,
                              extra={"loadavg_1m_start": load_start}, sent=sent)
    finally:
        stop.set()
        await asyncio.gather(watcher, *(t for t in (lagger,) if t is not None), return_exceptions=True)


def progress_bar(console: Console, duration_s: float) -> tuple[Progress, TaskID]:
    """The run's bar over `duration_s`, with a status line; shown only on a terminal."""
    bar = Progress(
        TextColumn("[bold]loadtest"), BarColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console, transient=False, disable=not console.is_terminal,
    )
    return bar, bar.add_task("load", total=duration_s, status="warming up")


async def _tick(bar: Progress, task: TaskID, watch: Watch, stop: asyncio.Event) -> None:
    last_print = 0.0
    while True:
        elapsed = time.time() - watch.started
        status = (f"sent {len(watch.sent_at):>7} payments  decided {watch.decided:>7}  "
                  f"p50 {watch.p_ms(50):6.1f} ms  in flight {watch.in_flight():>5}  "
                  f"dead letters {sum(watch.dead_letters.values())}")
        bar.update(task, completed=min(elapsed, bar.tasks[0].total or elapsed), status=status)
        if bar.disable and time.monotonic() - last_print >= 10:  # not a terminal: a line now and then
            last_print = time.monotonic()
            print(f"  {elapsed:5.1f}s  {status}", file=sys.stderr, flush=True)
        if stop.is_set():
            return
        await asyncio.sleep(0.25)
