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


def test_the_aiohttp_internals_http_errors_py_uses_are_there() -> None:
    """http_errors.py serves Faust's web server with its own aiohttp protocol class."""
    import inspect

    from aiohttp.web_protocol import RequestHandler
    from aiohttp.web_runner import AppRunner
    from aiohttp.web_server import Server
    from faust.web.drivers.aiohttp import Web

    assert "self._runner: AppRunner = AppRunner(self.web_app, access_log=None)" in inspect.getsource(Web), \
        "faust's aiohttp Web no longer builds its runner as http_errors.serve_json_errors does"
    assert hasattr(AppRunner, "_make_server"), "aiohttp AppRunner._make_server is gone"
    assert "RequestHandler(self, loop=self._loop, **self._kwargs)" in inspect.getsource(Server.__call__), \
        "aiohttp Server no longer makes its protocol as http_errors._Server does"
    assert list(inspect.signature(RequestHandler.handle_error).parameters) == [
        "self", "request", "status", "exc", "message"
    ], "aiohttp RequestHandler.handle_error changed"
