"""Fixtures of the integration modules that share one worker per module."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.harness import Client, WorkerProcess, unique


@pytest.fixture(scope="module")
def prefix(request: pytest.FixtureRequest) -> str:
    """A topic prefix of the module's own, so modules never see each other's records."""
    return unique(request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")) + "."


@pytest.fixture(scope="module")
def worker(bootstrap: str, prefix: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    w = WorkerProcess(bootstrap, prefix, unique("app"), tmp_path_factory.mktemp("worker")).start()
    yield w
    w.stop()


@pytest.fixture
async def client(bootstrap: str, prefix: str, worker: WorkerProcess) -> AsyncIterator[Client]:
    async with Client(bootstrap, prefix) as c:
        yield c
