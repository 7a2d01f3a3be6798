"""A load test's figures: `report.json`, the printed tables, and the labels side file."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from ..credit.report import reasons_by_kind
from .loadtest import LoadtestResult
from .quality import alert_quality, credit_quality, decision_quality, scenario_names
from .watch import INPUT_TOPICS

PERCENTILES = (50.0, 90.0, 99.0, 99.9, 100.0)


def _latency(hist: Any) -> dict[str, Any]:
    n = hist.get_total_count()
    out: dict[str, Any] = {"n": n}
    for q in PERCENTILES:
        key = "max" if q == 100.0 else f"p{q:g}"
        out[key] = round(hist.get_value_at_percentile(q) / 1000, 3) if n else None
    out["mean"] = round(hist.get_mean_value() / 1000, 3) if n else None
    return out


def build_report(result: LoadtestResult) -> dict[str, Any]:
    """Everything measured, as plain JSON data (written to report.json)."""
    w, p, cfg = result.watch, result.produced, result.config
    labels = result.traffic.labels
    decisions = decision_quality(labels, w.decisions)
    alerts = alert_quality(labels, w.alerts)
    seconds = sorted(w.seconds.items())
    busy = [s for _, s in seconds if s.sent]
    return {
        "config": {**cfg.as_dict(), "workers": result.workers, "broker": result.broker, **result.extra},
        # Figures from a shared or busy machine mean little; this says how busy it was.
        "machine": {"cpus": os.cpu_count(), "loadavg_1m_end": round(os.getloadavg()[0], 2),
                    "loadavg_1m_start": result.extra.get("loadavg_1m_start")},
        "sent": {"total": p.total, "elapsed_s": round(p.elapsed_s, 3),
                 "rate": round(p.total / p.elapsed_s, 1) if p.elapsed_s else None,
                 "per_topic": {t: p.sent.get(t, 0) for t in INPUT_TOPICS}, "malformed": p.malformed},
        "scenarios": {"instances": result.traffic.instances, "event_days": cfg.days},
        "decisions": {"total": w.decided, "actions": dict(w.actions), "reasons": dict(w.reasons),
                      "repeats": w.repeats, "undecided": w.undecided(),
                      "rate": round(sum(s.decided for s in busy) / len(busy), 1) if busy else None},
        "latency_ms": _latency(w.latency),
        "latency_histogram_ms": log_buckets(w.latency),
        "merchant_view_lag_ms": _latency(w.view_lag),
        "dead_letters": {"total": sum(w.dead_letters.values()), "by_topic": dict(w.dead_letters)},
        "alerts": {"total": len(w.alerts), "by_reason": _alert_reasons(w.alerts)},
        "credit_adjustments": len(w.adjustments),
        "credit_reasons": reasons_by_kind(w.adjustments),
        "advance_decisions": {"actions": dict(w.advance_actions), "reasons": dict(w.advance_reasons)},
        "quality": {"decisions": decisions, "alerts": alerts,
                    "credit": credit_quality(w.adjustments, w.defaults)},
        "series": {
            "second": [sec for sec, _ in seconds],
            "sent": [s.sent for _, s in seconds],
            "payments_sent": [s.payments for _, s in seconds],
            "decided": [s.decided for _, s in seconds],
            "p50_ms": [_pct(s.latency, 50) for _, s in seconds],
            "p99_ms": [_pct(s.latency, 99) for _, s in seconds],
            "lag_t": [round(t, 2) for t, _, _ in w.lag],
            "group_lag": [g for _, g, _ in w.lag],
            "in_flight": [f for _, _, f in w.lag],
        },
        "timing_s": {"warmup": round(result.warmup_s, 2), "drain": round(result.drained_s, 2)},
    }


def log_buckets(hist: Any, per_decade: int = 10) -> list[tuple[float, int]]:
    """The histogram as (lower edge in ms, count) over log-spaced buckets, for plotting."""
    counts: dict[int, int] = {}
    for item in hist.get_recorded_iterator():
        ms = max(item.value_iterated_to / 1000, 1e-3)
        b = math.floor(math.log10(ms) * per_decade)
        counts[b] = counts.get(b, 0) + item.count_added_in_this_iter_step
    return [(round(10 ** (b / per_decade), 4), n) for b, n in sorted(counts.items())]


def _pct(hist: Any, q: float) -> float | None:
    return round(hist.get_value_at_percentile(q) / 1000, 3) if hist.get_total_count() else None


def _alert_reasons(alerts: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in alerts:
        for r in a.get("reasons", ()):
            out[r] = out.get(r, 0) + 1
    return out


def write_outputs(result: LoadtestResult, report: dict[str, Any], out_dir: Path) -> list[Path]:
    """report.json, labels.jsonl (ground truth, one line per sent event) and the plots."""
    from .plots import write_plots

    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "report.json", out_dir / "labels.jsonl"]
    written[0].write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    with written[1].open("wb") as fh:
        for lab in result.traffic.labels:
            fh.write(orjson.dumps(lab.as_dict()) + b"\n")
    return written + write_plots(report, out_dir)


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if pct:
        return f"{100 * v:.2f}%" if 0 < v < 0.01 else f"{100 * v:.1f}%"
    return f"{v:,.1f}" if isinstance(v, float) else f"{v:,}"


def print_report(report: dict[str, Any], console: Console) -> None:
    """The run's tables: traffic and latency, then quality per scenario, then credit."""
    cfg, sent, dec, lat = report["config"], report["sent"], report["decisions"], report["latency_ms"]
    t = Table(title=f"StreamRisk load test: {cfg['workers']} worker(s) on {cfg['broker']}", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    per_topic = ", ".join(f"{k} {v:,}" for k, v in sent["per_topic"].items())
    t.add_row("events sent", f"{sent['total']:,} in {sent['elapsed_s']:.1f} s ({_fmt(sent['rate'])}/s): "
              f"{per_topic}; malformed {sent['malformed']}")
    acts = ", ".join(f"{a} {dec['actions'].get(a, 0):,}" for a in ("approve", "review", "decline"))
    t.add_row("decisions", f"{dec['total']:,} ({acts}); {_fmt(dec['rate'])}/s while sending")
    figures = "  ".join(f"{k} {_fmt(lat[k])} ms" for k in ("p50", "p99", "p99.9", "max"))
    t.add_row("produce -> decision", f"{figures}  (n={lat['n']:,}, HDR histogram)")
    view = report["merchant_view_lag_ms"]
    if view["n"]:
        t.add_row("merchant view lag",
                  f"p50 {_fmt(view['p50'])} ms  p99 {_fmt(view['p99'])} ms  (n={view['n']:,})")
    lags = [g for g in report["series"]["group_lag"] if g is not None]
    flight = report["series"]["in_flight"]
    if lags or flight:
        t.add_row("consumer lag", f"group lag max {max(lags, default=0):,} records, last "
                  f"{lags[-1] if lags else '-'}; payments in flight max {max(flight, default=0):,}")
    t.add_row("dead letters", f"{report['dead_letters']['total']:,} "
              + ", ".join(f"{k} {v}" for k, v in report["dead_letters"]["by_topic"].items()))
    t.add_row("undecided / repeated", f"{dec['undecided']:,} / {dec['repeats']:,}")
    machine = report["machine"]
    t.add_row("machine", f"{machine['cpus']} CPUs, load average {machine['loadavg_1m_start']} at the start, "
              f"{machine['loadavg_1m_end']} at the end")
    top = sorted(report["alerts"]["by_reason"].items(), key=lambda kv: -kv[1])
    t.add_row("fraud alerts", ", ".join(f"{k} {v}" for k, v in top) or "none")
    for kind, subject in (("limit", "user"), ("line", "merchant")):
        moves = report["quality"]["credit"][subject]
        top = sorted(report["credit_reasons"][kind].items(), key=lambda kv: -kv[1])
        reasons = ", ".join(f"{k} {v}" for k, v in top)
        t.add_row(f"credit {kind} adjustments",
                  f"{moves['raises']:,} up, {moves['cuts']:,} down; by reason: {reasons}" if top else "none")
    adv = report.get("advance_decisions") or {}
    actions, reasons = adv.get("actions") or {}, adv.get("reasons") or {}
    by_reason = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())) or "none"
    t.add_row("advance decisions", f"{actions.get('approve', 0):,} approved, {actions.get('decline', 0):,} "
              f"declined; by reason: {by_reason}" if actions else "none")
    console.print(t)
    console.print(quality_table(report))
    credit = report["quality"]["credit"]
    c = Table(title="Credit adjustments against later defaults (late repayment or chargeback)")
    for col in ("subject", "cuts", "cut, then default", "raises", "raise, then default", "defaulted"):
        c.add_column(col, justify="right" if col != "subject" else "left")
    for kind in ("user", "merchant"):
        r = credit[kind]
        c.add_row(kind, _fmt(r["cuts"]), _fmt(r["cuts_before_default"]), _fmt(r["raises"]),
                  _fmt(r["raises_to_later_defaulters"]), _fmt(r["subjects_defaulted"]))
    console.print(c)


def quality_table(report: dict[str, Any]) -> Table:
    q = report["quality"]
    t = Table(title="Quality per scenario (labels vs decisions and alerts)")
    for col in ("scenario", "payments", "fraud", "declined", "reviewed", "decline prec.", "decline recall",
                "flag recall", "instances", "alerts", "alert prec.", "alert recall"):
        t.add_column(col, justify="left" if col == "scenario" else "right", no_wrap=col == "scenario")
    for name in [*scenario_names(), "all"]:
        d, a = q["decisions"].get(name), q["alerts"].get(name, {})
        if d is None and not a.get("alerts"):
            continue
        d = d or {}
        t.add_row(name, _fmt(d.get("payments")), _fmt(d.get("fraud_payments")), _fmt(d.get("decline")),
                  _fmt(d.get("review")), _fmt(d.get("decline_precision"), True),
                  _fmt(d.get("decline_recall"), True), _fmt(d.get("flag_recall"), True),
                  _fmt(a.get("instances")), _fmt(a.get("alerts")), _fmt(a.get("alert_precision"), True),
                  _fmt(a.get("alert_recall"), True))
    normal, alerts_n = q["decisions"].get("normal", {}), q["alerts"].get("normal", {})
    t.caption = (f"normal traffic: {_fmt(normal.get('normal_decline_rate'), True)} of good payments "
                 "declined, "
                 f"{_fmt(normal.get('normal_flag_rate'), True)} declined or reviewed; "
                 f"{_fmt(alerts_n.get('alerted_subject_rate'), True)} of "
                 f"{_fmt(alerts_n.get('subjects'))} good users/merchants alerted; "
                 f"{_fmt(q['decisions'].get('all', {}).get('expected_declines', 0))} declines of credit "
                 "scenarios' payments over the limit (OVER_LIMIT) count as precise")
    return t
