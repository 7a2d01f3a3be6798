"""Shared fixtures. The session broker is chosen by STREAMRISK_TEST_BROKER=tansu|kafka."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from streamrisk.broker import BROKER_KINDS, EmbeddedBroker, start_broker

# Property tests check behaviour, not speed (speed is for the benchmarks): on a shared 2-core machine an
# example can take 0.5 s, and Hypothesis's 200 ms deadline failed a correct test with "unreliable timings".
settings.register_profile("streamrisk", deadline=None)
settings.load_profile("streamrisk")


@pytest.fixture(scope="session")
def broker_kind() -> str:
    """Which broker the integration tests run against (default: tansu)."""
    kind = os.environ.get("STREAMRISK_TEST_BROKER", "tansu").strip().lower() or "tansu"
    if kind not in BROKER_KINDS:
        raise pytest.UsageError(f"STREAMRISK_TEST_BROKER={kind!r}; expected one of {BROKER_KINDS}")
    return kind


@pytest.fixture(scope="session")
def session_broker(broker_kind: str) -> Iterator[EmbeddedBroker]:
    """One broker for the whole session, stopped (and its temp dir removed) at the end."""
    with start_broker(broker_kind) as broker:
        yield broker


@pytest.fixture(scope="session")
def bootstrap(session_broker: EmbeddedBroker) -> str:
    """Bootstrap address "127.0.0.1:PORT" of the session broker."""
    return session_broker.bootstrap
