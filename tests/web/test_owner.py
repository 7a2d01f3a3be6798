"""A key's owner: Kafka's murmur2 partition, then the member the group assignment gave it to."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from faust.types import TP

from streamrisk.web.owner import Owners, Route, key_partition


def test_key_partition_is_the_default_producer_partitioner() -> None:
    partitioner = DefaultPartitioner()
    for n in (1, 4, 7, 12):
        parts = list(range(n))
        for key in ("u1", "u000042", "merchant-é", "x" * 300):
            assert key_partition(key, n) == partitioner(key.encode(), parts, parts)


def test_key_partition_matches_the_java_client() -> None:
    # Utils.murmur2 values from the Java client's UtilsTest; the partition is toPositive(h) % n.
    for key, h in (("21", -973932308), ("foobar", -790332482), ("abc", 479470107)):
        assert key_partition(key, 100) == (h & 0x7FFFFFFF) % 100


def _app(own: set[int], members: dict[str, dict[str, list[int]]], url: str = "http://w1:1") -> Any:
    return SimpleNamespace(
        conf=SimpleNamespace(canonical_url=url),
        consumer=SimpleNamespace(assignment=lambda: {TP("payments", p) for p in own},
                                 topic_partitions=lambda topic: None),
        assignor=SimpleNamespace(external_topics_metadata=lambda: members),
    )


def test_route_is_local_for_an_owned_partition_and_the_owner_url_otherwise() -> None:
    members = {"http://w1:1": {"payments": [0, 1]}, "http://w2:2/": {"payments": [2, 3]}}
    owners = Owners(_app({0, 1}, members), "payments", 4)
    for key in (f"u{i}" for i in range(40)):
        p = key_partition(key, 4)
        expected = Route(p, True, None) if p in (0, 1) else Route(p, False, "http://w2:2")
        assert owners.route(key) == expected
    assert owners.members() == {"http://w1:1": [0, 1], "http://w2:2": [2, 3]}


def test_route_is_unknown_while_no_member_holds_the_partition() -> None:
    # Mid-rebalance: this worker gave up partition 3 and the assignment naming its new owner is not in.
    members = {"http://w1:1": {"payments": [0, 1, 2, 3]}}
    owners = Owners(_app({0, 1, 2}, members), "payments", 4)
    key = next(k for k in (f"u{i}" for i in range(100)) if key_partition(k, 4) == 3)
    assert owners.route(key) == Route(3, False, None)


def test_route_follows_the_partition_count_the_broker_reports() -> None:
    # A payments topic created earlier with 8 partitions, though the setting says 4.
    app = _app(set(), {"http://w2:2": {"payments": list(range(8))}})
    app.consumer.topic_partitions = lambda topic: 8
    owners = Owners(app, "payments", 4)
    key = next(k for k in (f"u{i}" for i in range(100)) if key_partition(k, 8) >= 4)
    assert owners.route(key) == Route(key_partition(key, 8), False, "http://w2:2")


def test_the_advertised_url_others_forward_to() -> None:
    import socket

    from streamrisk.settings import Settings

    assert Settings(web_port=7000).web_url == "http://127.0.0.1:7000"
    assert Settings(web_host="0.0.0.0", web_port=7000).web_url == f"http://{socket.gethostname()}:7000"
    env = {"STREAMRISK_WEB_URL": "http://worker-1:6066/"}
    assert Settings.from_env(env, web_host="0.0.0.0").web_url == "http://worker-1:6066"
