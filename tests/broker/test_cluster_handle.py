"""BrokerCluster.tend: a dead node is restarted only once the live nodes no longer list it (fenced), or
after the fence timeout; live nodes are left alone. No broker runs: the nodes are stand-ins."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrisk.broker._base import BrokerCluster


class FakeNode:
    def __init__(self, node_id: int, pid: int) -> None:
        self.node_id, self.pid, self.port = node_id, pid, 9000 + node_id
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.code: int | None = None
        self.stopped = False

    def poll(self) -> int | None:
        return self.code

    def stop(self, grace: float | None = None) -> None:
        self.stopped = True


def cluster_of(tmp_path: Path, listed: list[set[int] | None]) -> tuple[BrokerCluster, list[int]]:
    nodes = {n: FakeNode(n, 100 + n) for n in (1, 2, 3)}
    launched: list[int] = []

    def relaunch(node_id: int) -> FakeNode:
        launched.append(node_id)
        return FakeNode(node_id, 200 + node_id)

    c = BrokerCluster("kafka", nodes, relaunch, data_dir=tmp_path, cleanup_dir=None,  # type: ignore[arg-type]
                      fence_timeout_s=13.0)
    c.listed = lambda timeout=1.0: listed[0]  # type: ignore[method-assign]
    return c, launched


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr("streamrisk.broker._base.time.monotonic", lambda: now[0])
    return now


def test_a_dead_node_is_restarted_once_the_others_no_longer_list_it(
    tmp_path: Path, clock: list[float]
) -> None:
    listed: list[set[int] | None] = [{1, 2, 3}]
    c, launched = cluster_of(tmp_path, listed)
    assert c.tend() == [] and c.bootstrap == "127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003"
    c.node(2).code = -9  # type: ignore[attr-defined]
    said = c.tend()
    assert said == ["node 2 (pid 102) exited with status -9; restarting it once the controller has fenced it"]
    clock[0] += 5
    assert c.tend() == [] and launched == []  # still listed: its old session has not lapsed
    listed[0] = {1, 3}
    said = c.tend()
    assert launched == [2] and said == ["node 2 restarted (pid 202) on 127.0.0.1:9002"]
    assert c.node(2).pid == 202 and c.poll() is None


def test_without_an_answer_a_dead_node_is_restarted_after_the_fence_timeout(
    tmp_path: Path, clock: list[float]
) -> None:
    listed: list[set[int] | None] = [None]  # no live node answers
    c, launched = cluster_of(tmp_path, listed)
    c.node(1).code = 1  # type: ignore[attr-defined]
    c.tend()
    clock[0] += 12
    c.tend()
    assert launched == []
    clock[0] += 2
    c.tend()
    assert launched == [1]


def test_the_cluster_is_down_only_when_every_node_is(tmp_path: Path, clock: list[float]) -> None:
    c, _ = cluster_of(tmp_path, [{1, 2, 3}])
    for n in (1, 2):
        c.node(n).code = -9  # type: ignore[attr-defined]
    assert c.poll() is None
    c.node(3).code = 0  # type: ignore[attr-defined]
    assert c.poll() == -9
