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
