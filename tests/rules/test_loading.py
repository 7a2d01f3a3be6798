"""Loading rulesets: sources, validation, all-or-nothing rejection with named problems."""

from __future__ import annotations

import json

import pytest
import yaml
from rules_helpers import normal_ctx, rule, ruleset_mapping

from streamrisk.rules import RulesetError, default_ruleset, load_ruleset


def rejected(raw: dict) -> str:
    with pytest.raises(RulesetError) as info:
        load_ruleset(raw)
    return str(info.value)


def test_default_ruleset_loads_from_package_data() -> None:
    rs = default_ruleset()
    assert rs.version.startswith("default-")
    assert len(rs.rules) >= 8


def test_yaml_json_and_mapping_sources_load_the_same_ruleset(tmp_path) -> None:
    raw = ruleset_mapping(rule())
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(raw))
    (tmp_path / "r.json").write_text(json.dumps(raw))
    for source in (raw, tmp_path / "r.yaml", str(tmp_path / "r.json")):
        rs = load_ruleset(source)
        assert rs.version == "test-1"
        assert [r.name for r in rs.rules] == ["r1"]


def test_unreadable_or_unparsable_file_raises_ruleset_error(tmp_path) -> None:
    with pytest.raises(RulesetError, match="cannot read"):
        load_ruleset(tmp_path / "missing.yaml")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(RulesetError, match="cannot parse"):
        load_ruleset(tmp_path / "bad.json")


def test_broken_rule_is_rejected_with_its_name() -> None:
    message = rejected(ruleset_mapping(rule("ok"), rule("broken", when="user.payment_count_5m >")))
    assert "rule 'broken' (#2)" in message
    assert "does not compile" in message
    assert "'ok'" not in message


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"action": "approve"}, "unknown action 'approve'"),
        ({"action": "block"}, "unknown action 'block'"),
        ({"severity": "critical"}, "unknown severity 'critical'"),
        ({"reason": "velocity"}, "not an UPPER_SNAKE_CASE code"),
        ({"reason": "BAD__CODE"}, "not an UPPER_SNAKE_CASE code"),
        ({"reason": "HIGH_SCORE"}, "reserved for the score"),
        ({"when": ""}, "non-empty string"),
        ({"when": 5}, "non-empty string"),
        ({"enabled": "yes"}, "enabled must be true or false"),
        ({"acton": "decline"}, "unknown key(s) ['acton']"),
        ({"when": "user.payment_count_5min > 1.0"}, "unknown field 'user.payment_count_5min'"),
        ({"when": "usr.payment_count_5m > 1.0"}, "unknown identifier 'usr'"),
        ({"when": "params.nope > 1.0"}, "unknown param 'params.nope'"),
        ({"when": "user > 1.0"}, "'user' must be followed by .field_name"),
        ({"when": "has(user.new_device)"}, "has() is not supported"),
        ({"when": "max(user.new_device, 1.0) > 1.0"}, "unknown function 'max'"),
        ({"when": "user.payment_count_5m * 2 > 10.0"}, "write 2.0, not 2"),
        ({"when": "payment.method + 1.0 > 1.0"}, "fails on a probe context"),
        ({"when": "user.payment_count_5m + 1.0"}, "must return a bool"),
        ({"when": "payment.device_id"}, "must return a bool"),
        ({"when": "'unterminated"}, "unterminated string literal"),
    ],
)
def test_invalid_rule_is_rejected_naming_rule_and_problem(override: dict, expected: str) -> None:
    message = rejected(ruleset_mapping(rule("ok"), rule("bad", **override)))
    assert "(#2)" in message
    assert expected in message


def test_rule_name_must_be_snake_case() -> None:
    message = rejected(ruleset_mapping(rule("Bad Name", reason="BAD")))
    assert "rule 'Bad Name' (#1): name must be snake_case" in message


def test_rule_missing_required_keys_is_rejected() -> None:
    message = rejected(ruleset_mapping({"name": "half", "when": "true"}))
    assert "rule 'half' (#1): missing key(s) ['action', 'severity', 'reason']" in message


def test_duplicate_rule_name_is_rejected() -> None:
    message = rejected(ruleset_mapping(rule("twice"), rule("twice")))
    assert "rule 'twice' (#2): duplicate rule name" in message


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(RulesetError) as info:
        load_ruleset(ruleset_mapping(rule("a", action="nope"), rule("b", severity="nope"),
                                     version=3))
    problems = info.value.problems
    assert len(problems) == 3
    assert any("version" in p for p in problems)


@pytest.mark.parametrize(
    ("top", "expected"),
    [
        ({"version": ""}, "version must be a non-empty string"),
        ({"rules": {"a": 1}}, "rules must be a list"),
        ({"params": [1]}, "params must be a mapping"),
        ({"params": {"x": float("nan")}}, "not finite"),
        ({"params": {"x": {"a": 1}}}, "must be a number, string, bool"),
        ({"score": {"review_at": 0.9, "decline_at": 0.5}}, "above decline_at"),
        ({"score": {"review_at": 1.5}}, "must be in (0, 1]"),
        ({"score": {"weights": {"user.nope": 1.0}}}, "unknown field 'user.nope'"),
        ({"score": {"weights": {"user.new_device": "high"}}}, "must be a number"),
        ({"score": {"weights": {"payment.method": 1.0}}}, "is not numeric"),
        ({"score": {"weights": {"user.new_device == '1'": 1.0}}}, "needs a string field"),
        ({"score": {"weights": {"sqrt(user.new_device)": 1.0}}}, "is not `ns.field`"),
        ({"score": {"bias": 1.0, "threshold": 0.5}}, "unknown key(s) ['threshold']"),
        ({"extra": 1}, "unknown top-level key(s) ['extra']"),
    ],
)
def test_invalid_top_level_sections_are_rejected(top: dict, expected: str) -> None:
    assert expected in rejected(ruleset_mapping(rule(), **top))


def test_not_a_mapping_is_rejected(tmp_path) -> None:
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(RulesetError, match="must be a mapping"):
        load_ruleset(tmp_path / "list.yaml")


def test_loading_keeps_no_reference_to_the_callers_mapping() -> None:
    raw = ruleset_mapping(rule(), params={"x": 1.0}, meta={"author": "ops"})
    rs = load_ruleset(raw)
    raw["rules"][0]["when"] = "false"
    raw["meta"]["author"] = "someone else"
    assert rs.rules[0].when == "user.payment_count_5m > 10.0"
    assert rs.to_mapping()["meta"] == {"author": "ops"}


def test_params_are_substituted_so_operators_tune_numbers_only() -> None:
    def fires(limit: float) -> bool:
        raw = ruleset_mapping(rule(when="user.payment_count_5m > params.limit"),
                              params={"limit": limit})
        return bool(load_ruleset(raw).evaluate(normal_ctx(user={"payment_count_5m": 7})))

    assert fires(5)
    assert not fires(10)


def test_string_and_list_params_work_in_conditions() -> None:
    raw = ruleset_mapping(
        rule("blocked_country", when="payment.country in params.blocked"),
        rule("odd_currency", when="payment.currency == params.odd"),
        params={"blocked": ["KP", "IR"], "odd": "XAU"},
    )
    rs = load_ruleset(raw)
    fired = rs.evaluate(normal_ctx(payment={"country": "KP", "currency": "XAU"}))
    assert [f.name for f in fired] == ["blocked_country", "odd_currency"]
    assert rs.evaluate(normal_ctx()) == []


def test_field_names_inside_strings_and_comments_are_left_alone() -> None:
    raw = ruleset_mapping(rule(when=(
        "payment.merchant_id == 'user.payment_count_5m' // user.nope is only a comment\n"
        "|| payment.merchant_id == \"params.x\""
    )))
    rs = load_ruleset(raw)
    assert rs.evaluate(normal_ctx(payment={"merchant_id": "user.payment_count_5m"}))
    assert rs.evaluate(normal_ctx(payment={"merchant_id": "params.x"}))
    assert not rs.evaluate(normal_ctx())


def test_disabled_rule_is_validated_but_never_fires() -> None:
    rs = load_ruleset(ruleset_mapping(rule(when="true", enabled=False)))
    assert rs.rules[0].enabled is False
    assert rs.evaluate(normal_ctx()) == []
    with pytest.raises(RulesetError, match="does not compile"):
        load_ruleset(ruleset_mapping(rule(when="((", enabled=False)))


def test_comprehension_variables_are_allowed() -> None:
    raw = ruleset_mapping(rule(when="[1.0, 2.0].exists(x, x == user.new_device)"))
    rs = load_ruleset(raw)
    assert rs.evaluate(normal_ctx(user={"new_device": 1}))
    assert not rs.evaluate(normal_ctx())


def test_missing_score_section_gives_a_score_that_never_acts() -> None:
    rs = load_ruleset(ruleset_mapping(rule()))
    assert rs.score(normal_ctx()) < 1e-9
    assert rs.score_model.action(1.0) == 0
