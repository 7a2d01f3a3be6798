"""The topics a worker creates: names follow the prefix, and ordering-sensitive ones are set up for it."""

from __future__ import annotations

from streamrisk.runtime.topics import worker_topics
from streamrisk.settings import Settings


def test_control_topic_has_one_partition_so_every_worker_applies_rulesets_in_one_order() -> None:
    topics = worker_topics(Settings(topic_prefix="p.", partitions=6))
    assert topics["p.risk-rules"] == (1, {"cleanup.policy": "compact"})
    assert topics["p.payments"] == (6, {})
    assert topics["p.streamrisk-merchant-risk"] == (6, {"cleanup.policy": "compact"})
    assert topics["p.streamrisk-state-changelog"][1] == {"cleanup.policy": "compact"}


def test_existing_topics_partitioned_otherwise_are_named_with_the_fix() -> None:
    from streamrisk.runtime.topics import layout_problems

    settings = Settings(topic_prefix="p.", partitions=4)
    existing = {
        "p.payments": 4, "p.orders": 8, "p.streamrisk-state-changelog": 2, "p.risk-rules": 3,
        "p.dead-letters": 1,  # an output topic: any count will do
    }
    problems = layout_problems(settings, existing)
    assert len(problems) == 3
    assert problems[0].startswith("topic 'p.orders' has 8 partitions, this worker needs 4")
    assert "STREAMRISK_PARTITIONS" in problems[0]
    assert any("'p.streamrisk-state-changelog' has 2" in p for p in problems)
    assert any("'p.risk-rules' has 3 partitions, this worker needs 1" in p for p in problems)
    assert layout_problems(settings, {"p.payments": 4}) == []


def test_tools_that_produce_first_create_only_the_contract_topics() -> None:
    from streamrisk.runtime.topics import contract_topics

    topics = contract_topics(Settings(topic_prefix="p.", partitions=6))
    assert topics["p.risk-rules"] == (1, {"cleanup.policy": "compact"})  # not the broker's auto-create
    assert topics["p.orders"] == (6, {}) and "p.dead-letters" in topics
    assert not [t for t in topics if "streamrisk" in t]  # the app id's internal topics are the worker's


def test_the_prefix_names_the_consumer_group_and_every_internal_topic() -> None:
    """Two deployments with different prefixes and the default app id share nothing on the broker."""
    from streamrisk.core.topic_names import changelog_topic, consumer_group

    a, b = Settings(topic_prefix="a."), Settings(topic_prefix="b.")
    assert (consumer_group(a), changelog_topic(a)) == ("a.streamrisk", "a.streamrisk-state-changelog")
    assert set(worker_topics(a)).isdisjoint(worker_topics(b))
    assert all(t.startswith("a.") for t in worker_topics(a))
    # Without a prefix the names are what they always were.
    plain = Settings()
    assert (consumer_group(plain), changelog_topic(plain)) == ("streamrisk", "streamrisk-state-changelog")


def test_the_worker_uses_the_group_and_changelog_topics_names(tmp_path: object) -> None:
    from pathlib import Path

    from streamrisk.core.topic_names import changelog_topic, consumer_group
    from streamrisk.runtime.faust.app import build_app

    settings = Settings(topic_prefix="dep-a.", app_id="risk", data_dir=Path(str(tmp_path)))
    app, _ = build_app(settings)
    assert app.conf.id == consumer_group(settings) == "dep-a.risk"  # Faust's group id is its app id
    [table] = app.tables.values()
    assert table.changelog_topic.get_topic_name() == changelog_topic(settings) == "dep-a.risk-state-changelog"
    assert Path(app.conf.datadir).name.startswith("dep-a.risk")


def test_a_prefixed_worker_finding_only_the_unprefixed_changelog_warns_that_its_state_starts_anew(
    caplog: object,
) -> None:
    import logging

    from streamrisk.runtime.topics import _warn_of_unprefixed_state

    caplog.set_level(logging.WARNING, "streamrisk.runtime.topics")  # type: ignore[attr-defined]
    settings = Settings(topic_prefix="p.")
    _warn_of_unprefixed_state(settings, {"streamrisk-state-changelog", "p.payments"})
    assert "'p.streamrisk-state-changelog' does not" in caplog.text  # type: ignore[attr-defined]
    caplog.clear()  # type: ignore[attr-defined]
    _warn_of_unprefixed_state(settings, {"streamrisk-state-changelog", "p.streamrisk-state-changelog"})
    _warn_of_unprefixed_state(Settings(), {"streamrisk-state-changelog"})
    assert caplog.text == ""  # type: ignore[attr-defined]


def test_replication_follows_the_cluster_size_up_to_three_with_a_majority_in_sync() -> None:
    import asyncio
    from unittest import mock

    from streamrisk.runtime import topics as mod

    def resolved(brokers: int, replication: int | None = None) -> Settings:
        with mock.patch.object(mod, "cluster_size", mock.AsyncMock(return_value=brokers)):
            return asyncio.run(mod.resolve_replication(Settings(replication=replication)))

    assert [resolved(n).replication for n in (1, 2, 3, 5)] == [1, 2, 3, 3]
    assert resolved(5, replication=2).replication == 2  # a set value is kept
    assert [mod.min_insync_for(r) for r in (1, 2, 3, 5)] == [1, 1, 2, 3]
    compact = {"cleanup.policy": "compact"}
    assert mod.topic_config(Settings(replication=3), compact) == {**compact, "min.insync.replicas": "2"}
    # One copy: no topic config beyond the broker's defaults (every broker takes that).
    assert mod.topic_config(Settings(replication=1), compact) == compact


def test_replication_is_auto_unless_set() -> None:
    assert Settings().replication is None
    assert Settings.from_env({"STREAMRISK_REPLICATION": "auto"}).replication is None
    assert Settings.from_env({"STREAMRISK_REPLICATION": "3"}).replication == 3
    import pytest

    from streamrisk.settings import SettingsError

    with pytest.raises(SettingsError, match="STREAMRISK_REPLICATION"):
        Settings.from_env({"STREAMRISK_REPLICATION": "0"}).check()


def test_a_topic_the_cluster_refuses_is_named_with_the_brokers_reason() -> None:
    from types import SimpleNamespace

    from streamrisk.runtime.topics import creation_errors

    response = SimpleNamespace(topic_errors=[
        ("p.payments", 0, None),
        ("p.orders", 36, "Topic 'p.orders' already exists."),  # another worker created it first
        ("p.risk-rules", 38, "Replication factor: 3 larger than available brokers: 2."),
    ])
    assert creation_errors(response) == [
        "p.risk-rules: InvalidReplicationFactorError "
        "(Replication factor: 3 larger than available brokers: 2.)"
    ]
    assert creation_errors(SimpleNamespace(topic_errors=[("t", 0)])) == []  # v0 responses carry no message
