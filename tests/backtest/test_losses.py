"""Credit losses in a backtest (issue 19, item 6): the adaptive (default) credit policy beside the
static-limit one on the same hand-made recording; what counts as a loss and what does not."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml

from streamrisk.backtest.losses import CreditLedger, SideLosses, format_losses_by_scenario, verdict
from streamrisk.backtest.offline import run_backtest
from streamrisk.cli import main
from streamrisk.credit import load_policy, use_policy
from streamrisk.credit.policy import NEVER_RANK, PolicyError, default_policy, shipped_policy
from streamrisk.loadgen.patterns import DAY, HOUR, chargeback, payment, repayment
from streamrisk.recording.jsonl import Recorded
from streamrisk.rules import default_ruleset
from streamrisk.settings import Settings

T0 = 1_700_000_000_000
STATIC = Path(__file__).parents[2] / "src" / "streamrisk" / "credit" / "static_policy.yaml"


def credit(eid: str, user: str, amount: float, ts: int):
    return payment(eid, user, "shop-1", amount, ts, device=f"{user}-phone", method="credit_line")


def story() -> list[Recorded]:
    """Five credit users over 25 days (initial limit 2000 each):
    f1  draws 300, charged back as fraud a day later; the thief draws 300 again the day after, also
        charged back: the adaptive policy froze the limit at the first chargeback, so it declines it;
    r1  draws 200 and repays it on time: no loss;
    d1  draws 300 and never repays: 25 days later, a default on both sides;
    s1  draws 100, disputed as not received: a service dispute, not a loss;
    l1  draws 500 and repays it late (the adaptive policy cuts the limit 20 %, to 1600), then draws 1800
        and never repays: declined over the cut limit, approved over the static one, then a default."""
    recs = [
        credit("f1:p1", "f1", 300.0, T0), chargeback("f1:cb1", "f1:p1", "f1", "shop-1", 300.0, T0 + DAY),
        credit("f1:p2", "f1", 300.0, T0 + 2 * DAY),
        chargeback("f1:cb2", "f1:p2", "f1", "shop-1", 300.0, T0 + 3 * DAY),
        credit("r1:p", "r1", 200.0, T0), repayment("r1:r", "r1", 200.0, T0 + 3 * DAY, T0 + 4 * DAY),
        credit("d1:p", "d1", 300.0, T0),
        credit("s1:p", "s1", 100.0, T0),
        chargeback("s1:cb", "s1:p", "s1", "shop-1", 100.0, T0 + 2 * DAY, reason="not_received"),
        credit("l1:p1", "l1", 500.0, T0), repayment("l1:r", "l1", 500.0, T0 + 6 * DAY, T0 + 4 * DAY),
        credit("l1:p2", "l1", 1800.0, T0 + 6 * DAY + HOUR),
        payment("n1:p", "n1", "shop-1", 20.0, T0 + 25 * DAY),  # the recording's end: a card payment
    ]
    recs.sort(key=lambda r: r[2]["ts"])
    return [Recorded(t, k, orjson.dumps(v), v["ts"] + 5) for t, k, v in recs]


def backtest(records: list[Recorded], grace_days: float = 14.0):
    ledger = CreditLedger(grace_ms=int(grace_days * DAY))
    static = shipped_policy("static_policy.yaml")
    result = run_backtest(records, Settings(), default_ruleset(), default_ruleset(), shared=False,
                          configure=lambda p, cand: use_policy(p, static) if cand else None, ledger=ledger)
    return result, ledger


def test_a_draw_charged_back_as_fraud_or_unpaid_past_grace_is_a_loss_and_a_repaid_or_disputed_one_is_not():
    _, ledger = backtest(story())
    adaptive, static = ledger.losses(0), ledger.losses(1)
    assert ledger.drawn[0] == {"f1:p1", "r1:p", "d1:p", "s1:p", "l1:p1"}
    assert ledger.drawn[1] == ledger.drawn[0] | {"f1:p2", "l1:p2"}
    assert (adaptive.drawn, adaptive.draws) == (140_000, 5)  # minor units
    assert (adaptive.fraud, adaptive.fraud_draws) == (30_000, 1)
    assert (adaptive.defaulted, adaptive.defaulters) == (30_000, 1)  # d1; r1 repaid, l1 repaid p1
    assert (adaptive.disputed, adaptive.disputed_draws) == (10_000, 1)
    assert adaptive.losses == 60_000 and adaptive.loss_rate == pytest.approx(6 / 14)
    assert (static.drawn, static.fraud, static.defaulted, static.defaulters) == (350_000, 60_000, 210_000, 2)
    assert static.losses == 270_000
    # Losses 0.22 of the static side's, but at 0.4 of its approved credit volume: not the target.
    assert verdict(adaptive, static).startswith("  target MISS: losses current/candidate 0.222")


def test_a_balance_younger_than_the_grace_period_is_owed_not_lost():
    _, ledger = backtest(story(), grace_days=30.0)
    adaptive = ledger.losses(0)
    assert adaptive.defaulted == 0 and adaptive.owed_in_grace == 30_000 and adaptive.losses == 30_000


def test_the_static_policy_never_moves_a_limit_where_the_adaptive_one_freezes_and_cuts():
    result, _ = backtest(story())
    a, b = result.comparison.a.credit, result.comparison.b.credit
    assert a["limit cut"] >= 2  # the fraud freeze and the late-repayment cut
    assert not b["limit cut"] and not b["limit raise"]


def test_the_static_policy_file_validates_and_turns_every_adjustment_off():
    p = shipped_policy("static_policy.yaml")
    assert p.version.startswith("credit-static-")
    u = p.user
    assert u.initial_limit == default_policy().user.initial_limit
    assert (u.max_raise_pct, u.max_cut_pct, u.raise_pct) == (0, 0, 0)
    assert u.freeze_chargeback_reasons == frozenset()
    assert u.freeze_alert_rank == u.cut_alert_rank == p.merchant.fraud_alert_rank == NEVER_RANK
    assert load_policy(STATIC) == p
    with pytest.raises(PolicyError, match="must be one of low, medium, high, never"):
        load_policy({**_raw(), "user": {**_raw()["user"], "freeze_alert_severity": "sometimes"}})


def _raw() -> dict:
    import yaml

    return yaml.safe_load(STATIC.read_text())


def test_equal_volume_and_half_the_losses_passes() -> None:
    a = SideLosses(drawn=1000, fraud=40, defaulted=10)
    b = SideLosses(drawn=1000, fraud=100)
    assert verdict(a, b).startswith("  target PASS: losses current/candidate 0.500")
    assert verdict(SideLosses(drawn=999, fraud=10), b).startswith("  target MISS")


def test_backtest_prints_the_credit_losses_side_by_side(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = tmp_path / "rec.jsonl"
    rec.write_bytes(b"".join(orjson.dumps({"topic": r.topic, "key": r.key, "value": orjson.loads(r.value),
                                           "timestamp": r.timestamp}) + b"\n" for r in story()))
    out_json = tmp_path / "report.json"
    rules = Path(__file__).parents[2] / "src" / "streamrisk" / "rules" / "default.yaml"
    assert main(["backtest", str(rec), "--rules", str(rules), "--policy", str(STATIC),
                 "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    lines = text[text.index("credit losses"):].splitlines()
    assert "default: owed at the end with a draw unpaid for more than 14 days" in lines[0]
    row = {line[:30].strip(): line[30:].split() for line in lines[2:]}
    assert row["approved credit volume"] == ["1,400.00", "3,500.00"]
    assert row["losses"] == ["600.00", "2,700.00"]
    assert row["loss rate"] == ["42.86%", "77.14%"]
    assert row["disputed (not a loss)"] == ["100.00", "100.00"]
    assert "target MISS" in text
    body = orjson.loads(out_json.read_bytes())["credit_losses"]
    assert body["current"]["losses"] == 600.0 and body["candidate"]["approved_credit_volume"] == 3500.0


def test_one_processor_for_both_rulesets_gives_both_sides_the_same_losses() -> None:
    """Shared mode (no policy: the candidate is the processor's shadow) fills the ledger for both sides."""
    ledger = CreditLedger(grace_ms=14 * DAY)
    run_backtest(story(), Settings(), default_ruleset(), default_ruleset(), ledger=ledger)
    assert ledger.drawn[0] == ledger.drawn[1] == {"f1:p1", "r1:p", "d1:p", "s1:p", "l1:p1"}
    assert ledger.losses(0) == ledger.losses(1) and ledger.losses(0).losses == 60_000


def test_an_unproven_limit_caps_what_an_account_without_an_on_time_repayment_may_owe() -> None:
    """`user.unproven_limit` 500 on top of the default policy: every first draw of the story is within
    it (l1's 500 just so); l1 then repays late, so it is still unproven and its 1800 is declined (the
    default policy declines it too: the late repayment cut its limit to 1600)."""
    raw = yaml.safe_load((STATIC.parent / "default_policy.yaml").read_text())
    raw["user"]["unproven_limit"] = 500.0
    capped = load_policy(raw)
    assert capped.user.unproven_limit == 50_000
    ledger = CreditLedger(grace_ms=14 * DAY)
    run_backtest(story(), Settings(), default_ruleset(), default_ruleset(), shared=False,
                 configure=lambda p, cand: use_policy(p, capped if not cand else default_policy()),
                 ledger=ledger)
    assert ledger.drawn[0] == {"f1:p1", "r1:p", "d1:p", "s1:p", "l1:p1"}
    assert ledger.drawn[1] == {"f1:p1", "r1:p", "d1:p", "s1:p", "l1:p1"}  # the default policy cut l1
    # A user who repaid on time is proven: the cap no longer applies.
    recs = [credit("g1:p1", "g1", 400.0, T0), repayment("g1:r", "g1", 400.0, T0 + DAY, T0 + 4 * DAY),
            credit("g1:p2", "g1", 450.0, T0 + 2 * DAY), credit("g1:p3", "g1", 450.0, T0 + 2 * DAY + HOUR),
            credit("n1:p1", "n1", 400.0, T0), credit("n1:p2", "n1", 150.0, T0 + HOUR)]
    recs.sort(key=lambda r: r[2]["ts"])
    ledger = CreditLedger()
    run_backtest([Recorded(t, k, orjson.dumps(v), v["ts"] + 5) for t, k, v in recs], Settings(),
                 default_ruleset(), default_ruleset(), shared=False,
                 configure=lambda p, cand: use_policy(p, capped if not cand else default_policy()),
                 ledger=ledger)
    assert ledger.drawn[0] == {"g1:p1", "g1:p2", "g1:p3", "n1:p1"}  # n1 would owe 550 > 500
    assert ledger.drawn[1] == {"g1:p1", "g1:p2", "g1:p3", "n1:p1", "n1:p2"}


def test_a_policy_without_an_unproven_limit_has_none_and_a_bad_one_is_refused() -> None:
    assert default_policy().user.unproven_limit is None
    raw = yaml.safe_load((STATIC.parent / "default_policy.yaml").read_text())
    raw["user"]["unproven_limit"] = "lots"
    with pytest.raises(PolicyError, match=r"user\.unproven_limit must be a number"):
        load_policy(raw)


def test_losses_per_scenario_put_each_users_draws_under_the_scenario_of_their_first_one() -> None:
    _, ledger = backtest(story())
    scenario = {"f1:p1": "stolen", "f1:p2": "normal", "d1:p": "maxout"}
    text = format_losses_by_scenario(ledger, lambda eid: scenario.get(eid, "normal"), ("adaptive", "static"))
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[2:]}
    assert rows["stolen"] == ["300.00", "600.00", "300.00", "600.00"]  # f1's both draws
    assert rows["maxout"] == ["300.00", "300.00", "300.00", "300.00"]
    assert list(rows)[-1] == "normal"
