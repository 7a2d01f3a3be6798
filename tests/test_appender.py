"""appender.py without a broker: a producer whose batches never leave (an unstarted one, as if the
broker took nothing) makes the next record that needs room fail the delivery, loudly and by name."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaProducer

from streamrisk.runtime.delivery import DeliveryFailed
from streamrisk.runtime.faust.appender import Appender


async def test_no_room_in_the_producer_for_its_request_timeout_fails_the_delivery() -> None:
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:9", request_timeout_ms=200)
    # As if the producer had the topic's metadata (a record for a topic it does not know first waits
    # for it, as `send` does).
    producer.client.cluster._partitions["decisions"] = {0: None, 1: None}
    appender = Appender(producer)
    first = await appender.send("decisions", b"u1", b"x" * 12_000, 0)  # fills the partition's batch
    assert not first.done()
    full = r"no room in the producer for a record to decisions after 0\.2 s"
    with pytest.raises(DeliveryFailed, match=full):
        await appender.send("decisions", b"u2", b"y" * 12_000, 0)
    # Another partition's batch still has room: only the record that must wait fails.
    assert not (await appender.send("decisions", b"u3", b"z", 1)).done()
