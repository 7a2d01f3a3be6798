"""Shadow rulesets: published on risk-rules with "mode": "shadow", evaluated beside the live ruleset on
every payment, never acting; promoted by publishing the same version live; retired by a tombstone."""

from __future__ import annotations

import math

from tests.pipeline import Pipeline

from streamrisk.core.topic_names import shadow_decisions_topic
from streamrisk.loadgen import patterns

NOW = 1_800_000_000_000
LIVE = {"version": "live-1", "rules": []}
SHADOW = {"version": "shadow-1", "mode": "shadow", "rules": [
    {"name": "big_amount", "when": "payment.amount >= 500.0", "action": "decline",
     "severity": "high", "reason": "BIG_AMOUNT"}]}


def pay(user: str, amount: float, n: int = 0) -> list[patterns.Record]:
    return [patterns.payment(f"{user}:p{n}", user, "shop-1", amount, NOW + n)]


def shadow_records(pipe: Pipeline) -> list[dict]:
    topic = shadow_decisions_topic(pipe.settings)
    return [o.value for o in pipe.outputs if o.topic == topic]


def test_a_shadow_ruleset_decides_beside_the_live_one_and_never_acts() -> None:
    pipe = Pipeline()
    assert pipe.publish_rules("main", LIVE) == []
    assert pipe.publish_rules("shadow", SHADOW) == []
    outs = pipe.run([*pay("big", 900.0), *pay("small", 20.0)], now=NOW)
    # Live: both approved by live-1, no alert; the shadow's decline went nowhere else.
    decisions = {d["event_id"]: d for d in pipe.records("risk-decisions", outs)}
    assert {(e, d["action"], d["rules_version"]) for e, d in decisions.items()} == {
        ("big:p0", "approve", "live-1"), ("small:p0", "approve", "live-1")}
    assert pipe.records("fraud-alerts", outs) == []
    would_be = {r["event_id"]: r for r in shadow_records(pipe)}
    assert would_be["big:p0"]["action"] == "decline" and would_be["big:p0"]["reasons"] == ["BIG_AMOUNT"]
    assert would_be["big:p0"]["live_action"] == "approve" and would_be["big:p0"]["live_reasons"] == []
    assert would_be["big:p0"]["rules_version"] == "shadow-1"
    assert would_be["big:p0"]["decision_id"] != decisions["big:p0"]["decision_id"]
    stats = pipe.proc.stats()
    assert stats["rules_version"] == "live-1" and stats["shadow_rules_version"] == "shadow-1"
    assert stats["decisions"] == {"approve": 2}
    assert stats["shadow"] == {
        "version": "shadow-1", "decisions": 2, "same_action": 1, "same_reasons": 1, "agreement": 0.5,
        "actions": {"approve->approve": 1, "approve->decline": 1},
        "reasons": {"BIG_AMOUNT": {"live": 0, "shadow": 1}},
    }
    assert pipe.proc.shadow.tally is not None
    assert pipe.proc.shadow.tally.samples() == [
        ("streamrisk_shadow_decisions", {"version": "shadow-1", "live_action": "approve",
                                         "shadow_action": "approve"}, 1),
        ("streamrisk_shadow_decisions", {"version": "shadow-1", "live_action": "approve",
                                         "shadow_action": "decline"}, 1),
        ("streamrisk_shadow_reasons", {"version": "shadow-1", "side": "shadow", "reason": "BIG_AMOUNT"}, 1),
    ]


def test_publishing_the_shadow_version_live_promotes_it_and_empties_the_shadow_slot() -> None:
    pipe = Pipeline()
    pipe.publish_rules("main", LIVE)
    pipe.publish_rules("shadow", SHADOW)
    pipe.publish_rules("main", {**SHADOW, "mode": "live"})
    outs = pipe.run(pay("big", 900.0), now=NOW)
    assert [(d["action"], d["rules_version"]) for d in pipe.records("risk-decisions", outs)] == [
        ("decline", "shadow-1")]
    assert shadow_records(pipe) == []
    assert pipe.proc.stats()["shadow_rules_version"] is None


def test_a_tombstone_under_the_shadows_name_retires_it_and_one_under_the_live_name_is_ignored() -> None:
    pipe = Pipeline()
    pipe.publish_rules("main", LIVE)
    pipe.publish_rules("shadow", SHADOW)
    pipe.proc.on_broadcast(pipe.message("risk-rules", "main", None))
    assert pipe.proc.rules.shadow is not None and pipe.proc.rules.ruleset.version == "live-1"
    pipe.proc.on_broadcast(pipe.message("risk-rules", "shadow", None))
    pipe.run(pay("big", 900.0), now=NOW)
    assert pipe.proc.rules.shadow is None and shadow_records(pipe) == []


def test_a_shadow_with_an_unknown_mode_or_broken_rules_is_rejected_and_changes_nothing() -> None:
    pipe = Pipeline()
    pipe.publish_rules("main", LIVE)
    for bad, problem in (({**SHADOW, "mode": "dry-run"}, "mode must be 'live' or 'shadow'"),
                         ({**SHADOW, "rules": [{**SHADOW["rules"][0], "when": "payment.amount >"}]},
                          "big_amount")):
        letters = pipe.publish_rules("shadow", bad)
        assert len(letters) == 1 and problem in letters[0].value["error"]
    assert pipe.proc.rules.shadow is None and pipe.proc.rules.ruleset.version == "live-1"
    assert pipe.proc.stats()["rulesets_rejected"] == 2


def test_a_new_shadow_version_starts_its_own_agreement_counts() -> None:
    pipe = Pipeline()
    pipe.publish_rules("main", LIVE)
    pipe.publish_rules("shadow", SHADOW)
    pipe.run(pay("big", 900.0), now=NOW)
    pipe.publish_rules("shadow", {**SHADOW, "version": "shadow-2", "rules": []})
    pipe.run(pay("big", 900.0, n=1), now=NOW)
    assert pipe.proc.stats()["shadow"]["version"] == "shadow-2"
    assert pipe.proc.stats()["shadow"]["decisions"] == 1
    assert pipe.proc.stats()["shadow"]["agreement"] == 1.0


def test_a_shadow_scores_with_its_own_weights_and_shares_an_identical_score_formula() -> None:
    scored = {"bias": -6.0, "weights": {"log1p(payment.amount)": 1.0}}
    pipe = Pipeline()
    assert pipe.publish_rules("main", {**LIVE, "score": scored}) == []
    heavier = {"bias": -6.0, "weights": {"log1p(payment.amount)": 2.0}}
    assert pipe.publish_rules("shadow", {**SHADOW, "score": heavier}) == []
    outs = pipe.run(pay("u1", 90.0), now=NOW)
    live = pipe.records("risk-decisions", outs)[0]["score"]
    shadow = shadow_records(pipe)[0]["score"]
    assert math.isclose(live, 1 / (1 + math.exp(6.0 - math.log1p(90.0))), rel_tol=1e-12)
    assert math.isclose(shadow, 1 / (1 + math.exp(6.0 - 2 * math.log1p(90.0))), rel_tol=1e-12)
    # The same formula under another version: the same score, computed once.
    assert pipe.publish_rules("shadow", {**SHADOW, "version": "shadow-2", "score": dict(scored)}) == []
    outs = pipe.run(pay("u1", 90.0, 1), now=NOW)
    assert shadow_records(pipe)[-1]["score"] == pipe.records("risk-decisions", outs)[0]["score"] == live
