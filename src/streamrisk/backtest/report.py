"""The side-by-side text report of a Comparison (backtest and shadow-report print the same)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .compare import ACTIONS, Comparison, Quality, Tally


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:5.1f}%" if whole else "    -"


def _ratio(q: float | None) -> str:
    return "-" if q is None else f"{q:.3f}"


def _rows(title: str, names: Iterable[str], a: dict[str, int], b: dict[str, int],
          totals: tuple[int, int] | None = None) -> list[str]:
    lines = [title]
    for name in names:
        na, nb = a.get(name, 0), b.get(name, 0)
        share = f"  {_pct(na, totals[0])} {_pct(nb, totals[1])}" if totals else ""
        lines.append(f"  {name:<28}{na:>12}{nb:>12}{nb - na:>+10}{share}")
    return lines


def format_report(c: Comparison, labels: tuple[str, str] = ("current", "candidate"),
                  show_changes: int = 20) -> str:
    a, b = c.a, c.b
    head = f"{'':<30}{labels[0]:>12}{labels[1]:>12}{'change':>10}"
    lines = [f"{labels[0]}: ruleset {a.version}", f"{labels[1]}: ruleset {b.version}", head]
    lines += _rows("decisions by action", ACTIONS, a.actions, b.actions, (a.decisions, b.decisions))
    lines.append(f"  {'total':<28}{a.decisions:>12}{b.decisions:>12}")
    if a.dead_letters or b.dead_letters:
        lines.append(f"  {'dead letters (not decided)':<28}{a.dead_letters:>12}{b.dead_letters:>12}")
    reasons = sorted(set(a.reasons) | set(b.reasons), key=lambda r: (-(a.reasons[r] + b.reasons[r]), r))
    lines += _rows("reason codes (decisions)", reasons, a.reasons, b.reasons) if reasons else [
        "reason codes (decisions): none"]
    if a.alerts and b.alerts is None:
        lines += [f"fraud alerts by reason ({labels[0]} only: the {labels[1]} ran as a shadow, "
                  "which never alerts)"]
        lines += [f"  {r:<28}{n:>12}" for r, n in sorted(a.alerts.items())]
    elif a.alerts is not None and b.alerts is not None and (a.alerts or b.alerts):
        lines += _rows("fraud alerts by reason", sorted(set(a.alerts) | set(b.alerts)), a.alerts, b.alerts)
    lines += _quality_lines(c, a, b)
    lines += _credit_lines(a, b)
    lines += _change_lines(c, labels, show_changes)
    return "\n".join(lines)


def _quality_lines(c: Comparison, a: Tally, b: Tally) -> list[str]:
    qa, qb = c.quality(a), c.quality(b)
    frauds = next(iter(qa.values())).frauds
    lines = [f"quality against chargebacks: {frauds} of {len(c.decided)} compared payments were "
             f"charged back" + (f" ({c.unmatched_chargebacks} chargebacks name payments outside them)"
                                if c.unmatched_chargebacks else "")]
    for level in qa:
        for name, pick in (("precision", lambda q: q.precision), ("recall", lambda q: q.recall)):
            x, y = pick(qa[level]), pick(qb[level])
            lines.append(f"  {name + ' (' + level + ')':<28}{_ratio(x):>12}{_ratio(y):>12}"
                         f"{_delta(x, y):>10}")
    return lines


def _delta(x: float | None, y: float | None) -> str:
    return "" if x is None or y is None else f"{y - x:+.3f}"


def _credit_lines(a: Tally, b: Tally) -> list[str]:
    kinds = ("limit raise", "limit cut", "line raise", "line cut")
    if not (a.credit or b.credit):
        return ["credit adjustments: none"]
    return _rows("credit adjustments", kinds, a.credit, b.credit)


def _change_lines(c: Comparison, labels: tuple[str, str], show: int) -> list[str]:
    lines = [f"payments whose action changed: {c.changed} of {c.compared}"
             f" ({_pct(c.changed, c.compared).strip()}); same action and reasons: {c.agreed_reasons}"]
    moves = sorted(((k, n) for k, n in c.transitions.items() if k[0] != k[1]), key=lambda kv: -kv[1])
    for (x, y), n in moves:
        lines.append(f"  {x} -> {y}: {n}")
    for ch in c.changes[:show]:
        fraud = "  CHARGED BACK" if ch.event_id in c.charged_back else ""
        lines.append(
            f"  {ch.event_id} user {ch.user_id} merchant {ch.merchant_id} {ch.amount:.2f}: "
            f"{ch.before} {list(ch.before_reasons)} -> {ch.after} {list(ch.after_reasons)}{fraud}"
        )
    if c.changed > show:
        lines.append(f"  ... {c.changed - show} more")
    return lines


def report_json(c: Comparison, labels: tuple[str, str] = ("current", "candidate")) -> dict[str, Any]:
    """The same report as data (for `--json`)."""

    def side(t: Tally) -> dict[str, Any]:
        q: dict[str, Quality] = c.quality(t)
        return {
            "version": t.version, "decisions": dict(t.actions), "reasons": dict(t.reasons),
            "alerts": None if t.alerts is None else dict(t.alerts),
            "dead_letters": t.dead_letters, "credit": dict(t.credit),
            "quality": {lvl: {"flagged": x.flagged, "true_positives": x.true_positives,
                              "precision": x.precision, "recall": x.recall} for lvl, x in q.items()},
        }

    return {
        labels[0]: side(c.a), labels[1]: side(c.b),
        "compared": c.compared, "changed": c.changed,
        "charged_back": len(c.charged_back & c.decided),
        "transitions": {f"{x}->{y}": n for (x, y), n in c.transitions.items()},
    }
