"""Faust's aiokafka transport with the consumer fetch wait under our control.

Faust hard-codes `fetch_max_wait_ms=1500` for worker consumers. A broker that does not wake a parked
fetch when data arrives then adds up to 1.5 s to every decision; a risk decision has a budget of
milliseconds, so the wait comes from `Settings.fetch_max_wait_ms` instead.
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka

SCHEME = "streamrisk"


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            # Read by AIOKafkaConsumer.start() when it builds its Fetcher; there is no public setter.
            consumer._fetch_max_wait_ms = int(wait_ms)
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


TRANSPORTS[SCHEME] = f"{__name__}:Transport"


def broker_urls(bootstrap: str) -> list[str]:
    """`host:port[,host:port]` to the URL list Faust takes, using this transport."""
    return [f"{SCHEME}://{hp.strip()}" for hp in bootstrap.split(",") if hp.strip()]
