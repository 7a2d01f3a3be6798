"""Kafka's default partitioner, exactly: a record off the partition murmur2 gives its key is found."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamrisk.core.partitioning import MEMO_KEYS, KeyPlacement, kafka_partition, murmur2

# Apache Kafka's own UtilsTest.testMurmur2 vectors (Java ints).
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "java"), JAVA_MURMUR2.items())
def test_partition_is_the_java_clients(key: bytes, java: int) -> None:
    for n in (1, 3, 4, 12):
        assert kafka_partition(key, n) == (java & 0x7FFFFFFF) % n


@pytest.mark.parametrize(("key", "java"), JAVA_MURMUR2.items())
def test_murmur2_is_the_java_clients_as_unsigned(key: bytes, java: int) -> None:
    assert murmur2(key) == java & 0xFFFFFFFF


@given(st.binary(max_size=300))
def test_murmur2_equals_the_producers(key: bytes) -> None:
    # The core keeps its own copy (it imports no Kafka client); aiokafka's producer partitions with its.
    from aiokafka.partitioner import murmur2 as aiokafka_murmur2

    assert murmur2(key) == aiokafka_murmur2(key)


def test_a_record_off_its_keys_partition_is_named_with_the_fix() -> None:
    placement = KeyPlacement(4)
    right = kafka_partition(b"foobar", 4)
    assert placement.problem(b"foobar", right) is None
    problem = placement.problem(b"foobar", (right + 1) % 4)
    assert problem is not None
    assert f"partition {right} of 4" in problem and "murmur2_random" in problem


def test_memo_stays_bounded_and_correct() -> None:
    placement = KeyPlacement(7)
    for i in range(MEMO_KEYS * 2 + 5):
        key = f"user-{i}".encode()
        assert placement.expected(key) == kafka_partition(key, 7)
    assert len(placement._memo) <= MEMO_KEYS
