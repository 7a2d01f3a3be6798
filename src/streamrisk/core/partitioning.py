"""Partitioning checked, not assumed: which partition Kafka's default partitioner gives a key.

State is partitioned by message key. A record that a producer put on another partition than Kafka's
default (murmur2) partitioner gives its key would be processed by a worker that does not own its entity
and split that entity's state, so the processor dead-letters it (see Processor.process).
"""

from __future__ import annotations

import struct

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2` (what its default partitioner hashes a key with), as an unsigned 32-bit
    int. Here rather than aiokafka's copy so the core imports no Kafka client."""
    length = len(data)
    h = 0x9747B28C ^ length
    whole = length & ~3
    for (k,) in struct.iter_unpack("<I", data[:whole]):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = length & 3
    if extra >= 3:
        h ^= data[whole + 2] << 16
    if extra >= 2:
        h ^= data[whole + 1] << 8
    if extra >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


# Memo of recent keys: a pure-Python murmur2 costs ~3 us for a 10-byte key (grows with the
# key), a dict hit ~0.15 us; entities repeat, so most lookups hit. Cleared when full, so bounded.
MEMO_KEYS = 8192


def kafka_partition(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java client, aiokafka, librdkafka's murmur2_random)
    gives a non-null key."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class KeyPlacement:
    """Checks that keyed records sit on the partition murmur2 gives their key."""

    __slots__ = ("_memo", "partitions")

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self._memo: dict[bytes, int] = {}

    def expected(self, key: bytes) -> int:
        p = self._memo.get(key)
        if p is None:
            if len(self._memo) >= MEMO_KEYS:
                self._memo.clear()
            p = self._memo[key] = kafka_partition(key, self.partitions)
        return p

    def problem(self, key: bytes | None, partition: int) -> str | None:
        """Why a record with this key does not belong on `partition`, or None when it does."""
        if key is None:
            return None  # a keyless record fails validation (its key must equal the entity id)
        expected = self.expected(key)
        if expected == partition:
            return None
        return (
            f"record is on partition {partition} but Kafka's default partitioner puts its key on "
            f"partition {expected} of {self.partitions}; it would split the entity's state. Produce "
            "with the default murmur2 partitioner (librdkafka clients: partitioner=murmur2_random) "
            "and no explicit partition"
        )
