"""The faust-streaming internals the HTTP surface relies on, checked by name (as tests/test_runtime_pins.py
does for the runtime)."""

from __future__ import annotations

import faust
import pytest
from faust.assignor.partition_assignor import PartitionAssignor
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.web.base import BlueprintManager

# (owner, attribute, what the web package uses it for)
ATTRIBUTES = [
    (PartitionAssignor, "external_topics_metadata", "owner.py: every member's URL and input partitions"),
    (faust.App, "rebalancing", "routes.py: 503 while the group rebalances"),
    (faust.App, "http_client", "owner.py: forwarding a request to the key's owner"),
    (Consumer, "topic_partitions", "owner.py: the input topic's partition count"),
    (Consumer, "highwater", "metrics.py: consumer lag"),
    (Consumer, "position", "metrics.py: consumer lag before anything was processed"),
    (BlueprintManager, "_enabled", "routes.py: the dashboard replaces Faust's index at /"),
]


@pytest.mark.parametrize(
    ("owner", "name", "why"), ATTRIBUTES, ids=[f"{o.__name__}.{n}" for o, n, _ in ATTRIBUTES]
)
def test_faust_attribute_the_web_package_uses_exists(owner: type, name: str, why: str) -> None:
    has = hasattr(owner, name) or name in getattr(owner, "__annotations__", {})
    assert has, f"{owner.__module__}.{owner.__name__}.{name} is gone ({why})"


def test_recovery_keeps_the_times_the_recovery_metric_reads() -> None:
    import inspect

    source = inspect.getsource(Recovery)
    for name in ("_recovery_started_at", "_recovery_ended_at", "self.completed"):
        assert name in source, f"faust Recovery no longer sets {name} (metrics.recovery_seconds, /ready)"
