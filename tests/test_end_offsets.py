"""Recovery's end offsets, confirmed by a fetch (runtime/faust/transport.py), with no broker to ask."""

from __future__ import annotations

import socket
import time

import pytest
from faust.types import TP

from streamrisk.runtime.faust.transport import EndOffsetsUnconfirmed, confirmed_end_offsets


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_empty_partitions_need_no_broker() -> None:
    listed = {TP("t", 0): 0, TP("t", 1): 0}
    assert await confirmed_end_offsets([f"127.0.0.1:{_closed_port()}"], listed, timeout_s=0.1) == listed


async def test_a_broker_that_stays_away_stops_recovery_loudly_instead_of_using_the_listed_offsets() -> None:
    # A broker restarting is waited for; one that never answers must not make recovery stop at the
    # listed offsets, which may be short of the newest state.
    started = time.monotonic()
    with pytest.raises(EndOffsetsUnconfirmed, match="t"):
        await confirmed_end_offsets([f"127.0.0.1:{_closed_port()}"], {TP("t", 0): 5}, timeout_s=1.5)
    assert time.monotonic() - started >= 1.5  # it kept trying until the deadline
