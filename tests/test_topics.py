"""The topics a worker creates: names follow the prefix, and ordering-sensitive ones are set up for it."""

from __future__ import annotations

from streamrisk.settings import Settings
from streamrisk.topics import worker_topics


def test_control_topic_has_one_partition_so_every_worker_applies_rulesets_in_one_order() -> None:
    topics = worker_topics(Settings(topic_prefix="p.", partitions=6))
    assert topics["p.risk-rules"] == (1, {"cleanup.policy": "compact"})
    assert topics["p.payments"] == (6, {})
    assert topics["p.streamrisk-merchant-risk"] == (6, {"cleanup.policy": "compact"})
    assert topics["streamrisk-state-changelog"][1] == {"cleanup.policy": "compact"}


def test_existing_topics_partitioned_otherwise_are_named_with_the_fix() -> None:
    from streamrisk.topics import layout_problems

    settings = Settings(topic_prefix="p.", partitions=4)
    existing = {
        "p.payments": 4, "p.orders": 8, "streamrisk-state-changelog": 2, "p.risk-rules": 3,
        "p.dead-letters": 1,  # an output topic: any count will do
    }
    problems = layout_problems(settings, existing)
    assert len(problems) == 3
    assert problems[0].startswith("topic 'p.orders' has 8 partitions, this worker needs 4")
    assert "STREAMRISK_PARTITIONS" in problems[0]
    assert any("'streamrisk-state-changelog' has 2" in p for p in problems)
    assert any("'p.risk-rules' has 3 partitions, this worker needs 1" in p for p in problems)
    assert layout_problems(settings, {"p.payments": 4}) == []


def test_tools_that_produce_first_create_only_the_contract_topics() -> None:
    from streamrisk.topics import contract_topics

    topics = contract_topics(Settings(topic_prefix="p.", partitions=6))
    assert topics["p.risk-rules"] == (1, {"cleanup.policy": "compact"})  # not the broker's auto-create
    assert topics["p.orders"] == (6, {}) and "p.dead-letters" in topics
    assert not [t for t in topics if "streamrisk" in t]  # the app id's internal topics are the worker's
