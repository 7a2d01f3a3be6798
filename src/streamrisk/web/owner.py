"""Which worker owns a key, and forwarding a request to it.

State is partitioned by message key with Kafka's default partitioner, so a key's partition is
murmur2(key) % partitions of the input topics. All input topics are co-partitioned, so one worker
holds partition p of every one of them. Faust's partition assignor shares every member's web URL and
assigned partitions with the whole group at each rebalance (`external_topics_metadata()`); that map
tells us the owner. Faust's own `app.router` does the same for tables with a source topic, but routes
by the changelog topic's metadata, so we look the owner up ourselves. What a forwarded request
carries to prove it comes from a peer is peer.py's.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import faust
from faust.types import TP

from ..core.partitioning import kafka_partition

# Set on a forwarded request: its receiver answers 503 rather than forward again (no loops when
# two workers briefly disagree about the assignment).
FORWARDED_HEADER = "X-StreamRisk-Forwarded-By"
FORWARD_TIMEOUT_S = 5.0
# Headers of the owner's answer worth passing on, and its peer signature (peer.py; the caller checks
# it and drops it).
PASSED_HEADERS = ("Content-Type", "Retry-After", "X-StreamRisk-Peer-Reply")


def key_partition(key: str, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives a UTF-8 key."""
    return kafka_partition(key.encode(), partitions)


@dataclass(frozen=True, slots=True)
class Route:
    """Where a key lives: here (`local`), at `url`, or nowhere known yet (both unset: 503)."""

    partition: int
    local: bool
    url: str | None


class Owners:
    """Looks up a key's owner in the group assignment Faust's assignor keeps."""

    def __init__(self, app: faust.App, topic: str, partitions: int) -> None:
        self.app = app
        self.topic = topic
        self.partitions = partitions

    @property
    def own_url(self) -> str:
        return str(self.app.conf.canonical_url).rstrip("/")

    def owned(self) -> list[int]:
        return sorted(tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.topic)

    def owns(self, partition: int) -> bool:
        return TP(self.topic, partition) in self.app.consumer.assignment()

    def members(self) -> dict[str, list[int]]:
        """Every group member's web URL -> its partitions of the input topics, as last assigned."""
        out: dict[str, list[int]] = {}
        for url, topics in self.app.assignor.external_topics_metadata().items():
            out[str(url).rstrip("/")] = sorted(topics.get(self.topic, ()))
        return out

    def partition_count(self) -> int:
        """The input topic's partitions as the broker's metadata says (the setting until it is known).

        A topic created before with another count keeps it; producers partition by that count.
        """
        try:
            return self.app.consumer.topic_partitions(self.topic) or self.partitions
        except Exception:  # no consumer yet
            return self.partitions

    def route(self, key: str) -> Route:
        partition = key_partition(key, self.partition_count())
        if self.owns(partition):
            return Route(partition, True, None)
        for url, parts in self.members().items():
            if partition in parts and url != self.own_url:
                return Route(partition, False, url)
        return Route(partition, False, None)


async def forward(
    app: faust.App, url: str, path_qs: str, headers: dict[str, str]
) -> tuple[int, bytes, dict[str, str]]:
    """GET `path_qs` from the worker at `url`; (status, body, headers worth passing on)."""
    session: aiohttp.ClientSession = app.http_client
    timeout = aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S)
    async with session.get(url + path_qs, headers=headers, timeout=timeout) as resp:
        body = await resp.read()
        keep = {k: v for k, v in resp.headers.items() if k in PASSED_HEADERS}
        return resp.status, body, keep


