"""Settings from STREAMRISK_* variables: values, defaults, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrisk.settings import DAY_MS, HOUR_MS, Settings, SettingsError


def test_decision_settings_come_from_the_environment() -> None:
    s = Settings.from_env({
        "STREAMRISK_RULES": "/etc/rules.yaml",
        "STREAMRISK_ALERT_DEDUPE_MS": "60000",
        "STREAMRISK_PAYMENT_INDEX_DAYS": "90",
        "STREAMRISK_TOPIC_PREFIX": "prod.",
    })
    assert s.rules_path == Path("/etc/rules.yaml")
    assert s.alert_dedupe_ms == 60_000
    assert s.payment_index_ms == 90 * DAY_MS
    assert s.topic("risk-rules") == "prod.risk-rules"


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.rules_path, s.alert_dedupe_ms, s.payment_index_ms) == (None, HOUR_MS, 180 * DAY_MS)


def test_memory_budget_comes_from_the_environment() -> None:
    assert Settings.from_env({}).max_cached_entities == 20_000
    assert Settings.from_env({"STREAMRISK_MAX_CACHED_ENTITIES": "500"}).max_cached_entities == 500


def test_decisions_kept_per_merchant_come_from_the_environment() -> None:
    assert Settings.from_env({}).merchant_recent_decisions == 10
    assert Settings.from_env({"STREAMRISK_MERCHANT_RECENT_DECISIONS": "3"}).merchant_recent_decisions == 3


def test_the_consumer_runs_on_the_workers_loop_unless_told_to_keep_fausts_thread() -> None:
    assert Settings.from_env({}).consumer_thread is False
    assert Settings.from_env({"STREAMRISK_CONSUMER_THREAD": "yes"}).consumer_thread is True
    assert Settings.from_env({"STREAMRISK_CONSUMER_THREAD": "0"}).consumer_thread is False


def test_flags_win_over_the_environment() -> None:
    s = Settings.from_env({"STREAMRISK_RULES": "a.yaml"}, rules_path=Path("b.yaml"))
    assert s.rules_path == Path("b.yaml")


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"STREAMRISK_PAYMENT_INDEX_DAYS": "half a year"}, "DAYS must be a whole number of days"),
        ({"STREAMRISK_ALERT_DEDUPE_MS": "1h"}, "STREAMRISK_ALERT_DEDUPE_MS must be an integer"),
        ({"STREAMRISK_WINDOWS": "5 minutes"}, "STREAMRISK_WINDOWS"),
        ({"STREAMRISK_CREDIT": "maybe"}, "STREAMRISK_CREDIT must be on or off"),
        ({"STREAMRISK_CONSUMER_THREAD": "sometimes"}, "STREAMRISK_CONSUMER_THREAD must be 1/true/yes"),
        ({"STREAMRISK_EXPLAIN": "maybe"}, "STREAMRISK_EXPLAIN must be 1/true/yes"),
    ],
)
def test_unreadable_values_name_their_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"STREAMRISK_PAYMENT_INDEX_DAYS": "0"}, "STREAMRISK_PAYMENT_INDEX_DAYS must be >= 1"),
        ({"STREAMRISK_ALERT_DEDUPE_MS": "-5"}, "STREAMRISK_ALERT_DEDUPE_MS must be >= 0"),
        ({"STREAMRISK_WEB_HOST": "0.0.0.0"}, "STREAMRISK_API_TOKEN"),
        ({"STREAMRISK_MAX_CACHED_ENTITIES": "0"}, "STREAMRISK_MAX_CACHED_ENTITIES must be >= 1"),
        ({"STREAMRISK_MERCHANT_RECENT_DECISIONS": "-1"}, "STREAMRISK_MERCHANT_RECENT_DECISIONS must be >= 0"),
    ],
)
def test_values_that_cannot_work_are_refused_at_check(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle):
        Settings.from_env(env).check()


def test_credit_settings_come_from_the_environment() -> None:
    s = Settings.from_env({"STREAMRISK_CREDIT_POLICY": "/etc/credit.yaml", "STREAMRISK_CREDIT": "off"})
    assert (s.credit_policy_path, s.credit_enabled) == (Path("/etc/credit.yaml"), False)
    assert Settings.from_env({}).credit_enabled
