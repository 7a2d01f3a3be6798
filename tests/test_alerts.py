"""Fraud patterns through the whole core (no Kafka): each raises its alert once, normal traffic none;
late chargebacks find their payment; the merchant side reaches payment decisions; rules hot-reload."""

from __future__ import annotations

import pytest

from streamrisk.loadgen import patterns
from streamrisk.loadgen.patterns import DAY, HOUR, MINUTE
from streamrisk.rules import default_ruleset
from streamrisk.settings import Settings
from streamrisk.state.kv import DictKV
from tests.pipeline import Pipeline

NOW = 1_800_000_000_000
ALERT_FIELDS = {"alert_id", "subject_type", "subject_id", "severity", "reasons", "event_ids", "ts"}


def alerts_for(pipe: Pipeline, subject: str) -> list[dict]:
    return [a for a in pipe.records("fraud-alerts") if a["subject_id"] == subject]


def decisions_for(pipe: Pipeline, user: str) -> dict[str, dict]:
    return {d["event_id"]: d for d in pipe.records("risk-decisions") if d["user_id"] == user}


USER_PATTERNS = {
    "VELOCITY_5M": patterns.velocity_burst,
    "CARD_TESTING": patterns.card_testing,
    "NEW_DEVICE_HIGH_AMOUNT": patterns.new_device_high_amount,
    "CHARGEBACK": patterns.chargeback_days_late,
    "UNMATCHED_CHARGEBACK": patterns.unmatched_chargeback,
}
MERCHANT_PATTERNS = {
    "MERCHANT_REFUND_SPIKE": patterns.refund_spike,
    "MERCHANT_BUST_OUT": patterns.bust_out,
}


@pytest.mark.parametrize("reason", sorted(USER_PATTERNS))
def test_user_pattern_raises_one_alert_with_its_reason(reason: str) -> None:
    pipe = Pipeline()
    pipe.run(USER_PATTERNS[reason]("u1", NOW), now=NOW)
    alerts = alerts_for(pipe, "u1")
    assert len(alerts) == 1, alerts
    a = alerts[0]
    assert a.keys() >= ALERT_FIELDS
    assert a["subject_type"] == "user"
    assert reason in a["reasons"]
    assert a["event_ids"] and all(e.startswith("u1:") for e in a["event_ids"])


@pytest.mark.parametrize("reason", sorted(MERCHANT_PATTERNS))
def test_merchant_pattern_raises_one_merchant_alert(reason: str) -> None:
    pipe = Pipeline()
    pipe.run(MERCHANT_PATTERNS[reason]("shop9", NOW), now=NOW)
    alerts = [a for a in alerts_for(pipe, "shop9") if reason in a["reasons"]]
    assert len(alerts) == 1, pipe.records("fraud-alerts")
    assert alerts[0]["subject_type"] == "merchant"
    assert alerts[0]["event_ids"]


def test_normal_users_and_merchants_raise_no_alert() -> None:
    pipe = Pipeline()
    records = [r for i in range(6) for r in patterns.normal_user(f"n{i}", NOW)]
    records += [r for i in range(3) for r in patterns.normal_merchant(f"shop-{i}", NOW)]
    records.sort(key=lambda r: r[2]["ts"])
    pipe.run(records, now=NOW)
    assert pipe.records("fraud-alerts") == []
    decisions = pipe.records("risk-decisions")
    assert len(decisions) == sum(1 for t, _, _ in records if t == "payments")
    assert {d["action"] for d in decisions} == {"approve"}
    assert max(d["score"] for d in decisions) < 0.2


def test_velocity_alert_names_the_burst_and_later_repeats_are_suppressed() -> None:
    pipe = Pipeline()
    pipe.run(patterns.velocity_burst("u1", NOW, n=25), now=NOW)
    [alert] = alerts_for(pipe, "u1")
    # Raised by the 11th payment, naming it first and the burst before it.
    assert alert["event_ids"][0] == "u1:vb10"
    assert set(alert["event_ids"]) == {f"u1:vb{i}" for i in range(11)}
    assert alert["severity"] == "high"
    assert pipe.proc.alert_gate.suppressed == 14
    assert pipe.proc.stats()["alerts"] == {"VELOCITY_5M": 1}
    # After the dedupe window (1 h of event time) the same pattern is news again.
    again = [(t, k, {**v, "event_id": v["event_id"] + "-again"})
             for t, k, v in patterns.velocity_burst("u1", NOW + 2 * HOUR)]
    pipe.run(again, now=NOW + 2 * HOUR)
    assert len(alerts_for(pipe, "u1")) == 2


def test_alert_dedupe_survives_a_restart_on_the_same_table() -> None:
    kv = DictKV()
    first = Pipeline(kv=kv)
    first.run(patterns.velocity_burst("u1", NOW, n=12), now=NOW)
    later = [patterns.payment(f"u1:late{i}", "u1", "u1-shop", 25.0, NOW + i) for i in range(1, 4)]
    restarted = Pipeline(kv=kv)
    restarted.run(later, now=NOW + MINUTE)
    assert len(alerts_for(first, "u1")) == 1
    assert alerts_for(restarted, "u1") == []


def test_burst_payments_are_declined_with_the_reason() -> None:
    pipe = Pipeline()
    pipe.run(patterns.velocity_burst("u1", NOW, n=12), now=NOW)
    d = decisions_for(pipe, "u1")
    assert [d[f"u1:vb{i}"]["action"] for i in range(10)] == ["approve"] * 10
    assert d["u1:vb11"]["action"] == "decline" and d["u1:vb11"]["reasons"][0] == "VELOCITY_5M"
    assert d["u1:vb11"]["rules_version"] == default_ruleset().version


def test_new_device_payment_gets_review_features_from_the_users_past() -> None:
    pipe = Pipeline()
    pipe.run(patterns.new_device_high_amount("u1", NOW), now=NOW)
    d = decisions_for(pipe, "u1")
    assert "NEW_DEVICE_HIGH_AMOUNT" in d["u1:big"]["reasons"]
    assert d["u1:big"]["action"] in ("review", "decline")
    # The same amount from the usual phone is an outlier, not a new device.
    pipe2 = Pipeline()
    recs = patterns.new_device_high_amount("u2", NOW)
    recs[-1][2]["device_id"] = "u2-phone"
    pipe2.run(recs, now=NOW)
    assert "NEW_DEVICE_HIGH_AMOUNT" not in decisions_for(pipe2, "u2")["u2:big"]["reasons"]
    assert "AMOUNT_OUTLIER" in decisions_for(pipe2, "u2")["u2:big"]["reasons"]


def test_chargeback_five_days_late_finds_its_payment_and_counts_at_its_own_time() -> None:
    pipe = Pipeline()
    pipe.run(patterns.chargeback_days_late("u1", NOW, days=5), now=NOW)
    [alert] = alerts_for(pipe, "u1")
    assert alert["reasons"] == ["CHARGEBACK"]
    assert alert["event_ids"] == ["u1:cb", "u1:paid"]
    assert alert["ts"] == NOW
    found = pipe.proc.payment_index.find("u1", "u1:paid")
    assert found is not None and found.chargeback_id == "u1:cb"
    assert pipe.proc.counters.chargebacks_matched == 1
    user = pipe.proc.users.get("u1").features()
    assert user["chargeback_count_30d"] == 1 and user["chargeback_rate_30d"] == 1.0
    merchant = pipe.proc.merchant_view["u1-shop"]
    assert merchant["chargeback_count_30d"] == 1
    # The user's next payment is reviewed for the chargeback.
    pipe.run([patterns.payment("u1:next", "u1", "u1-shop", 30.0, NOW + MINUTE)], now=NOW + MINUTE)
    assert "USER_CHARGEBACKS" in decisions_for(pipe, "u1")["u1:next"]["reasons"]


def test_chargeback_for_a_payment_older_than_the_windows_is_still_matched() -> None:
    pipe = Pipeline()
    old = patterns.payment("u1:old", "u1", "m1", 90.0, NOW - 120 * DAY)
    cb = patterns.chargeback("u1:cb", "u1:old", "u1", "m1", 90.0, NOW)
    pipe.run([old], now=NOW - 120 * DAY)
    pipe.run([cb], now=NOW)
    [alert] = alerts_for(pipe, "u1")
    assert alert["reasons"] == ["CHARGEBACK"]


def test_unknown_payment_chargeback_is_counted_and_flagged() -> None:
    pipe = Pipeline()
    pipe.run(patterns.unmatched_chargeback("u1", NOW), now=NOW)
    [alert] = alerts_for(pipe, "u1")
    assert alert["reasons"] == ["CHARGEBACK", "UNMATCHED_CHARGEBACK"]
    assert pipe.proc.counters.chargebacks_unmatched == 1
    assert pipe.proc.users.get("u1").features()["chargeback_count_30d"] == 1


def test_payment_at_a_bust_out_merchant_sees_the_merchant_side() -> None:
    pipe = Pipeline()
    pipe.run(patterns.bust_out("shop9", NOW), now=NOW)
    # Payment keyed by an unrelated user: decided with the merchant's published summary.
    pipe.run([patterns.payment("x:1", "stranger", "shop9", 20.0, NOW)], now=NOW)
    d = decisions_for(pipe, "stranger")["x:1"]
    assert d["action"] == "decline" and "MERCHANT_BUST_OUT" in d["reasons"]
    # No user alert for a merchant-only rule: the merchant's owner raised it once.
    assert alerts_for(pipe, "stranger") == []


def _ruleset_v2(version: str = "v2") -> dict:
    return {
        "version": version,
        "rules": [{"name": "big", "when": "payment.amount > 100.0", "action": "decline",
                   "severity": "medium", "reason": "BIG_AMOUNT"}],
    }


def test_published_ruleset_takes_effect_and_an_invalid_one_is_rejected() -> None:
    pipe = Pipeline()
    assert pipe.publish_rules("main", _ruleset_v2()) == []
    pipe.run([patterns.payment("a", "u1", "m1", 150.0, NOW)], now=NOW)
    d = decisions_for(pipe, "u1")["a"]
    assert (d["action"], d["reasons"], d["rules_version"]) == ("decline", ["BIG_AMOUNT"], "v2")

    bad = _ruleset_v2("v3")
    bad["rules"][0]["when"] = "payment.amount > "
    [letter] = pipe.publish_rules("main", bad)
    assert letter.value["source_topic"] == "risk-rules"
    assert "rule 'big' (#1)" in letter.value["error"]
    [letter2] = pipe.publish_rules("main", b"{not json")
    assert "not valid JSON" in letter2.value["error"]
    pipe.run([patterns.payment("b", "u1", "m1", 150.0, NOW + 1)], now=NOW)
    assert decisions_for(pipe, "u1")["b"]["rules_version"] == "v2"
    stats = pipe.proc.stats()
    assert stats["rules_version"] == "v2"
    assert (stats["rulesets_loaded"], stats["rulesets_rejected"]) == (1, 2)


def test_rejected_ruleset_is_not_dead_lettered_again_while_catching_up() -> None:
    pipe = Pipeline()
    assert pipe.publish_rules("main", b"{not json", report=False) == []
    assert pipe.proc.stats()["rulesets_rejected"] == 1


def test_rules_file_setting_is_the_starting_ruleset(tmp_path) -> None:
    path = tmp_path / "rules.json"
    path.write_bytes(__import__("orjson").dumps(_ruleset_v2("from-file")))
    pipe = Pipeline(Settings(rules_path=path))
    pipe.run([patterns.payment("a", "u1", "m1", 150.0, NOW)], now=NOW)
    assert decisions_for(pipe, "u1")["a"]["rules_version"] == "from-file"


def test_chargeback_processed_before_its_payment_marks_the_payment_when_it_arrives() -> None:
    pipe = Pipeline()
    pay, cb = patterns.chargeback_days_late("u1", NOW, days=0)
    pipe.run([cb], now=NOW)  # the chargebacks topic was read first
    [alert] = alerts_for(pipe, "u1")
    assert alert["reasons"] == ["CHARGEBACK", "UNMATCHED_CHARGEBACK"]
    pipe.run([pay], now=NOW)
    found = pipe.proc.payment_index.find("u1", "u1:paid")
    assert found is not None and found.chargeback_id == "u1:cb"
    assert pipe.proc.stats()["chargebacks_matched_late"] == 1
    # The hold stays until swept (a payment read again after a crash that lost its mark claims it
    # again); a producer's repeat of the payment is a duplicate and matches nothing.
    assert pipe.proc.early_chargebacks.claim(0, "u1", "u1:paid") == "u1:cb"
    pipe.run([pay], now=NOW)
    assert pipe.proc.stats()["chargebacks_matched_late"] == 1


def test_a_stray_record_on_the_summary_topic_keeps_the_previous_summary() -> None:
    pipe = Pipeline()
    pipe.run(patterns.normal_merchant("shop1", NOW)[:4], now=NOW)
    before = pipe.proc.merchant_view["shop1"]
    stray = pipe.message("streamrisk-merchant-risk", "shop1", b"not json")
    assert pipe.proc.on_broadcast(stray) == []
    assert pipe.proc.merchant_view["shop1"] == before
    assert pipe.proc.stats()["bad_summaries"] == 1
