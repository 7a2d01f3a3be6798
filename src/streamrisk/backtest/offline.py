"""A recording through the worker's own core (`Processor.run_local`) with the ruleset in force and a
candidate. No broker; the same recording gives the same result.

Two ways, same decisions while state does not depend on decisions (no credit policy):
- shared: one processor, the candidate as its shadow ruleset (rules/shadow.py), so windows, features
  and merchant summaries are computed once and only deciding is done twice;
- separate: one processor per ruleset, fed the same batches in lockstep; needed once a credit policy
  makes state depend on what was decided (a declined payment draws no credit).

The clock: a worker checks each record's `ts` against its wall clock (future skew). Offline, "now"
is the recording's own time: the newest record time (Kafka timestamp) of the batch, or its newest
event time for lines recorded without one. A backtest run next year decides as the worker did.

Batches: records are fed in file order, up to `batch_max` records spanning at most `batch_span_ms`
of record time, as a worker would take them off a busy partition; merchant summaries are applied
after each batch, so the merchant side lags by one batch, as it lags by one hop live.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson

from ..core.events import Payment
from ..core.partitioning import kafka_partition
from ..core.processor import Processor
from ..core.records import Message, Out
from ..recording.jsonl import Recorded
from ..rules import Ruleset
from ..rules.ruleset import Context
from ..rules.shadow import ShadowRun
from ..rules.verdict import Verdict
from ..settings import CONTROL_TOPIC, INPUT_TOPICS, Settings
from ..state.kv import DictKV
from .compare import Comparison, Tally
from .losses import CreditLedger

CREDIT_TOPICS = {"credit-limit-adjustments": "limit", "credit-line-adjustments": "line"}

#: Called with each payment, its context and the live verdict at the moment it is decided (shared
#: mode): what `streamrisk train` exports, point in time.
Watch = Callable[[Payment, Context, Verdict], None]


@dataclass
class Lane:
    """One processor's run and what it did."""

    processor: Processor
    tally: Tally
    follow_rules: bool  # apply risk-rules records of the recording (the ruleset in force does)
    shadow: Ruleset | None = None  # the candidate, deciding beside the live ruleset (shared mode)


class KeptVerdicts(ShadowRun):
    """The candidate's side in shared mode: its verdicts by payment, kept for the comparison until the
    batch is tallied. No would-be decision records (nothing reads the shadow topic offline) and no
    agreement counts (the comparison is that count)."""

    def __init__(self, topic: str, watch: Watch | None = None) -> None:
        super().__init__(topic)
        self.verdicts: dict[str, Verdict] = {}
        self.watch = watch

    def observe(self, ruleset: Ruleset, payment: Payment, ctx: Context, live: Verdict,
                explain: bool = False, live_ruleset: Ruleset | None = None) -> None:
        if self.watch is not None:
            self.watch(payment, ctx, live)
        self.verdicts[payment.event_id] = self.decide(ruleset, ctx, live, explain, live_ruleset)


@dataclass
class Backtest:
    comparison: Comparison
    shared: bool = True
    records: int = 0
    ignored: dict[str, int] = field(default_factory=dict)  # recorded topics a worker does not read
    first_ts: int | None = None
    last_ts: int | None = None
    elapsed_s: float = 0.0
    cpu_s: float = 0.0  # this process's CPU time: on a shared machine, what the run itself cost
    credit: CreditLedger | None = None  # credit losses of each side (`ledger=` of run_backtest)

    @property
    def span_s(self) -> float:
        if self.first_ts is None or self.last_ts is None:
            return 0.0
        return (self.last_ts - self.first_ts) / 1000.0

    @property
    def speedup(self) -> float:
        """Record time covered per second of backtest (both rulesets)."""
        return self.span_s / self.elapsed_s if self.elapsed_s > 0 else 0.0


class Feeder:
    """Turns recorded lines into the messages a worker would have consumed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._partition_of: dict[bytes, int] = {}
        self._offsets: dict[tuple[str, int], int] = {}

    def partition(self, key: bytes | None) -> int:
        # Kafka's default partitioner, so entities land where a worker would hold them.
        if key is None:
            return 0
        p = self._partition_of.get(key)
        if p is None:
            p = kafka_partition(key, self.settings.partitions)
            self._partition_of[key] = p
        return p

    def message(self, rec: Recorded) -> Message:
        key = None if rec.key is None else rec.key.encode()
        topic = self.settings.topic(rec.topic)
        part = self.partition(key)
        offset = rec.offset
        if offset is None:
            offset = self._offsets.get((topic, part), 0)
            self._offsets[(topic, part)] = offset + 1
        return Message(topic, part, offset, key, rec.value, rec.timestamp)


def run_backtest(
    records: Iterable[Recorded],
    settings: Settings,
    current: Ruleset,
    candidate: Ruleset | None,
    *,
    configure: Callable[[Processor, bool], None] | None = None,
    shared: bool = True,
    batch_max: int = 500,
    batch_span_ms: int = 100,
    watch: Watch | None = None,
    ledger: CreditLedger | None = None,
) -> Backtest:
    """Run both rulesets over `records`; `configure(processor, is_candidate)` applies e.g. a policy to
    the candidate (in shared mode one processor serves both: it is configured as the current one).
    `candidate=None` runs the current ruleset alone (what one worker would do: the benchmark's
    baseline). `watch` sees every payment as it is decided, with the context it was decided on (shared
    mode, with a candidate). `ledger` collects each side's credit draws, chargebacks and repayments
    for the credit losses (losses.py)."""
    lanes = []
    # The table in a dict, keeping no log of its writes: the log (for tests) holds every version of
    # every chunk ever written, gigabytes an hour of demo traffic.
    if shared:
        proc = Processor(settings, DictKV(log=False), current)
        if configure is not None:  # the one processor (e.g. a watch on its credit book)
            configure(proc, False)
        lanes.append(Lane(proc, Tally(version=current.version), follow_rules=True, shadow=candidate))
        proc.rules.shadow = candidate
        proc.shadow = KeptVerdicts(proc.shadow.topic, watch)
        b_tally = Tally(version=candidate.version if candidate else "-", alerts=None)
    else:
        if candidate is None or watch is not None:
            raise ValueError("separate mode needs a candidate ruleset, and watches only in shared mode")
        for ruleset, is_candidate in ((current, False), (candidate, True)):
            proc = Processor(settings, DictKV(log=False), ruleset)
            if configure is not None:
                configure(proc, is_candidate)
            lanes.append(Lane(proc, Tally(version=ruleset.version), follow_rules=not is_candidate))
        b_tally = lanes[1].tally
    result = Backtest(Comparison(lanes[0].tally, b_tally), shared=shared, credit=ledger)
    feeder = Feeder(settings)
    inputs = set(INPUT_TOPICS)
    batch: list[Message] = []
    clock = 0
    batch_start: int | None = None
    started, cpu_started = time.perf_counter(), time.process_time()
    for rec in records:
        result.records += 1
        t = rec.timestamp if rec.timestamp is not None else rec.event_ts()
        if t is not None:
            result.first_ts = t if result.first_ts is None else min(result.first_ts, t)
            result.last_ts = t if result.last_ts is None else max(result.last_ts, t)
        if rec.topic == CONTROL_TOPIC:
            _run_batch(lanes, batch, clock, result.comparison, ledger)  # rules apply between batches
            batch, batch_start = [], None
            msg = feeder.message(rec)
            for lane in lanes:
                if lane.follow_rules:
                    lane.processor.on_broadcast(msg, report=False)
                    # The recording's own shadow rulesets do not replace the candidate.
                    lane.processor.rules.shadow = lane.shadow
            continue
        if rec.topic not in inputs:
            result.ignored[rec.topic] = result.ignored.get(rec.topic, 0) + 1
            continue
        if rec.topic == "chargebacks":
            _label(rec, result.comparison)
        if ledger is not None:
            with contextlib.suppress(orjson.JSONDecodeError):  # the worker dead-letters it
                ledger.observe(rec.topic, orjson.loads(rec.value or b""))
        if t is not None:
            if batch and batch_start is not None and t > batch_start + batch_span_ms:
                _run_batch(lanes, batch, clock, result.comparison, ledger)
                batch, batch_start = [], None
            if batch_start is None:
                batch_start = t
            clock = max(clock, t)
        batch.append(feeder.message(rec))
        if len(batch) >= batch_max:
            _run_batch(lanes, batch, clock, result.comparison, ledger)
            batch, batch_start = [], None
    _run_batch(lanes, batch, clock, result.comparison, ledger)
    result.elapsed_s = time.perf_counter() - started
    result.cpu_s = time.process_time() - cpu_started
    return result


def _label(rec: Recorded, comparison: Comparison) -> None:
    """A chargeback names the payment it proves fraudulent (an invalid one is dead-lettered)."""
    try:
        value = orjson.loads(rec.value or b"")
    except orjson.JSONDecodeError:
        return
    payment_id = value.get("payment_id") if isinstance(value, dict) else None
    if isinstance(payment_id, str) and payment_id:
        comparison.add_chargeback(payment_id)


def _run_batch(lanes: list[Lane], batch: list[Message], now: int, comparison: Comparison,
               ledger: CreditLedger | None = None) -> None:
    if not batch:
        return
    if len(lanes) == 1:
        lane = lanes[0]
        a = _tally(lane, lane.processor.run_local(batch, now or None))
        # Each verdict of the candidate pairs with its live decision in `a`, in the same order; a
        # payment whose processing failed has no decision (its outputs were dropped): its verdict
        # is not counted either.
        kept = lane.processor.shadow.verdicts
        tally = comparison.b
        for event_id, d_a in a.items():
            v = kept.get(event_id)
            if v is not None:
                tally.add_decision(event_id, v.action, v.reasons, v.rules_version)
                comparison.add_pair(d_a, {"action": v.action, "reasons": v.reasons})
                if ledger is not None:
                    ledger.decided(0, event_id, d_a["action"])
                    ledger.decided(1, event_id, v.action)
        kept.clear()
        tally.dead_letters = comparison.a.dead_letters  # one processor validated for both
        return
    a, b = (_tally(lane, lane.processor.run_local(batch, now or None)) for lane in lanes)
    for event_id, d_a in a.items():
        d_b = b.get(event_id)
        if d_b is not None:
            comparison.add_pair(d_a, d_b)
    if ledger is not None:
        for side, decisions in enumerate((a, b)):
            for event_id, d in decisions.items():
                ledger.decided(side, event_id, d["action"])


def _tally(lane: Lane, outs: list[Out]) -> dict[str, dict]:
    """Count one processor's contract outputs; its decisions of this batch by payment event_id."""
    s = lane.processor.settings
    t_decisions, t_alerts = s.topic("risk-decisions"), s.topic("fraud-alerts")
    t_dead = s.topic("dead-letters")
    credit = {s.topic(name): kind for name, kind in CREDIT_TOPICS.items()}
    tally = lane.tally
    decisions: dict[str, dict] = {}
    for o in outs:
        v = o.value
        if not isinstance(v, dict):
            continue
        if o.topic == t_decisions:
            decisions[v["event_id"]] = v
            tally.add_decision(v["event_id"], v["action"], v["reasons"], v.get("rules_version", ""))
        elif o.topic == t_alerts and tally.alerts is not None:
            tally.alerts.update(v["reasons"])
        elif o.topic == t_dead:
            tally.dead_letters += 1
        elif o.topic in credit:
            kind = credit[o.topic]
            tally.add_credit(kind, v.get(f"previous_{kind}"), v.get(f"new_{kind}"))
    return decisions
