"""`streamrisk backtest` core: a candidate ruleset beside the current one over a recording, offline,
through the worker's own processor; deterministic, on the recording's clock."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from streamrisk.backtest.offline import run_backtest
from streamrisk.backtest.report import format_report, report_json
from streamrisk.loadgen import patterns
from streamrisk.loadgen.patterns import DAY, MINUTE
from streamrisk.recording.jsonl import Recorded
from streamrisk.rules import Ruleset, default_ruleset, load_ruleset
from streamrisk.settings import Settings

YEAR_AGO = 1_700_000_000_000  # a recording made long before the test runs
BIG = {"name": "big_amount", "when": "payment.amount >= 500.0", "action": "decline",
       "severity": "high", "reason": "BIG_AMOUNT"}


def candidate() -> Ruleset:
    raw = default_ruleset().to_mapping()
    raw["version"] = "candidate-1"
    raw["rules"].append(BIG)
    return load_ruleset(raw)


def recording(now: int = YEAR_AGO) -> list[Recorded]:
    """A normal month for one user, a velocity burst, two big payments; chargebacks on one payment
    of the burst and on one big payment, days later."""
    recs = patterns.normal_user("n1", now - 2 * DAY)
    recs += patterns.velocity_burst("v1", now - 2 * DAY)
    recs += [patterns.payment("b1:p", "b1", "shop-0", 900.0, now - 2 * DAY + MINUTE),
             patterns.payment("b2:p", "b2", "shop-0", 900.0, now - 2 * DAY + 2 * MINUTE)]
    recs += [patterns.chargeback("v1:cb", "v1:vb12", "v1", "v1-shop", 25.0, now),
             patterns.chargeback("b1:cb", "b1:p", "b1", "shop-0", 900.0, now + MINUTE)]
    recs.sort(key=lambda r: r[2]["ts"])
    # Record time: when the record was produced, a few ms after its event time.
    return [Recorded(t, k, orjson.dumps(v), v["ts"] + 5) for t, k, v in recs]


def test_backtest_reports_what_the_candidate_changes_and_its_precision_and_recall() -> None:
    result = run_backtest(recording(), Settings(), default_ruleset(), candidate())
    c = result.comparison
    assert c.compared == c.a.decisions == c.b.decisions == 62  # 45 normal + 15 burst + 2 big
    assert {(ch.event_id, ch.before, ch.after, ch.after_reasons) for ch in c.changes} == {
        ("b1:p", "approve", "decline", ("BIG_AMOUNT",)),
        ("b2:p", "approve", "decline", ("BIG_AMOUNT",)),
    }
    assert c.b.reasons["BIG_AMOUNT"] == 2 and "BIG_AMOUNT" not in c.a.reasons
    assert c.a.reasons["VELOCITY_5M"] == c.b.reasons["VELOCITY_5M"] == 5  # burst payments 11 to 15
    assert c.charged_back == {"v1:vb12", "b1:p"}
    qa, qb = c.quality(c.a)["decline"], c.quality(c.b)["decline"]
    assert (qa.flagged, qa.true_positives, qa.frauds) == (5, 1, 2)  # the burst; its chargeback
    assert (qb.flagged, qb.true_positives, qb.frauds) == (7, 2, 2)  # ... and both big payments
    assert qb.recall == 1.0 and qa.recall == 0.5 and qb.precision == pytest.approx(2 / 7)
    text = format_report(c)
    assert "payments whose action changed: 2 of 62" in text
    assert "b1:p user b1 merchant shop-0 900.00: approve [] -> decline ['BIG_AMOUNT']  CHARGED BACK" in text


def test_the_same_recording_gives_the_same_report_and_one_processor_matches_two() -> None:
    shared = [report_json(run_backtest(recording(), Settings(), default_ruleset(), candidate()).comparison)
              for _ in range(2)]
    separate = run_backtest(recording(), Settings(), default_ruleset(), candidate(), shared=False)
    assert shared[0] == shared[1]
    body = report_json(separate.comparison)
    for side in ("current", "candidate"):
        # A shadow never alerts nor adjusts credit; decided separately it does both.
        body[side]["alerts"] = shared[0][side]["alerts"]
        body[side]["credit"] = shared[0][side]["credit"]
    assert body == shared[0]
    assert separate.comparison.b.alerts and separate.comparison.b.alerts["BIG_AMOUNT"] == 2


def test_the_clock_is_the_recordings_own_so_old_records_are_not_future_and_future_ones_are() -> None:
    recs = recording()
    future = patterns.payment("f1:p", "f1", "shop-0", 10.0, YEAR_AGO + 10 * MINUTE)[2]
    # Produced at YEAR_AGO with a ts 10 min ahead: the worker dead-lettered it (5 min skew).
    recs.append(Recorded("payments", "f1", orjson.dumps(future), YEAR_AGO + 2 * MINUTE))
    result = run_backtest(recs, Settings(), default_ruleset(), candidate())
    assert result.comparison.a.dead_letters == 1
    assert result.comparison.compared == 62  # every other payment decided, a year after it was made
    # From the first payment of the normal month to the last record produced.
    assert result.span_s == (YEAR_AGO + 2 * MINUTE - (YEAR_AGO - 32 * DAY + 5)) / 1000


def test_rulesets_published_during_the_recording_apply_to_the_current_side_only() -> None:
    recs = recording()
    v2 = {"version": "live-v2", "rules": [{**BIG, "reason": "HUGE"}]}
    shadow = {"version": "other-shadow", "rules": [], "mode": "shadow"}
    # Published just before the two big payments.
    at = next(i for i, r in enumerate(recs) if r.key == "b1")
    recs[at:at] = [Recorded("risk-rules", "main", orjson.dumps(v2)),
                   Recorded("risk-rules", "shadow", orjson.dumps(shadow))]
    c = run_backtest(recs, Settings(), default_ruleset(), candidate()).comparison
    assert list(c.a.versions) == [default_ruleset().version, "live-v2"]
    assert set(c.b.versions) == {"candidate-1"}  # the recording's shadow did not replace it
    assert c.a.reasons["HUGE"] == 2


def test_the_readme_candidate_is_the_default_ruleset_with_only_a_tighter_velocity_limit() -> None:
    # The backtest and shadow examples (docs/loadtest-and-backtest.md) read as "one change": keep them so.
    root = Path(__file__).resolve().parents[2]
    candidate = load_ruleset(root / "docs" / "backtest" / "candidate.yaml").to_mapping()
    current = default_ruleset().to_mapping()
    assert candidate["params"]["velocity_5m_max"] < current["params"]["velocity_5m_max"]
    for key in ("version", "params"):
        candidate.pop(key), current.pop(key)
    assert candidate == current
