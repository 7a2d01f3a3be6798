"""The registry of state key kinds: every key of the state table, what it holds, and whose it is.

A key is its kind, the separator, the id of the entity it belongs to, and maybe more fields:
`kind␟id[␟...]` (the alert gate's keys put the subject type before the id). The kind is the bytes before
the first separator. The background sweep hands each key to the expiry of its kind (sweep.py), and a
worker that loses partitions drops the keys of those partitions (`key_partition`): a kind missing here
is neither swept nor dropped, so every module that writes the table takes its kind from here.
"""

from __future__ import annotations

from typing import NamedTuple

from ..core.partitioning import kafka_partition
from .kv import SEP


class KeyKind(NamedTuple):
    kind: bytes  # the bytes before the first separator
    what: str  # for /stats and docs/operations.md
    id_field: int  # which separated field is the entity id (murmur2 of it gives the key's partition)


USER = b"u"
MERCHANT = b"m"
PAYMENT_INDEX = b"x"
EARLY_CHARGEBACK = b"k"
ALERT_DEDUPE = b"a"
MERCHANT_DECISIONS = b"d"
CREDIT_USER = b"cu"
CREDIT_MERCHANT = b"cm"
ORDER_INDEX = b"ox"  # a payment index (payment_index.py) of orders, keyed by merchant
REVIEW = b"rv"  # a payment decided `review`: its case, its resolution and audit trail (reviews.py)

KINDS: dict[bytes, KeyKind] = {
    k.kind: k
    for k in (
        KeyKind(USER, "user state (held events in chunks)", 1),
        KeyKind(MERCHANT, "merchant state (held events in chunks)", 1),
        KeyKind(PAYMENT_INDEX, "a user's recent payments, for late chargebacks", 1),
        KeyKind(EARLY_CHARGEBACK, "a chargeback read before its payment", 1),
        KeyKind(ALERT_DEDUPE, "the last alert per subject and reason", 2),
        KeyKind(MERCHANT_DECISIONS, "a merchant's last decisions", 1),
        KeyKind(CREDIT_USER, "a user's credit account", 1),
        KeyKind(CREDIT_MERCHANT, "a merchant's credit line", 1),
        KeyKind(ORDER_INDEX, "a merchant's fulfilled orders in the settlement period", 1),
        KeyKind(REVIEW, "a payment decided review: its case and audit trail", 1),
    )
}


def kind_of(key: bytes) -> bytes:
    """The kind of a table key: the bytes before its first separator (b"" for a key without one)."""
    end = key.find(SEP)
    return key[:end] if end > 0 else b""


def entity_of(key: bytes) -> str | None:
    """The id of the entity a table key belongs to; None for a key of no registered kind."""
    parts = key.split(SEP)
    kind = KINDS.get(parts[0])
    if kind is None or len(parts) <= kind.id_field:
        return None
    return parts[kind.id_field].decode()


def id_partition(entity_id: str, partitions: int) -> int:
    """The partition of an entity id's records and state: Kafka's default partitioner of the id."""
    return kafka_partition(entity_id.encode(), partitions)


def drop_partitions(table: dict[bytes, bytes], keep: set[int], partitions: int) -> int:
    """Remove from `table` (in memory only, no tombstones) every key of a partition not in `keep`: a
    worker's keys of partitions it no longer owns. Keys of no registered kind stay. Returns how many
    went. Their changelog records stay: the partition's next owner restores them from there."""
    memo: dict[bytes, int] = {}  # entity id -> partition: an entity has several keys
    gone = []
    for key in table:
        parts = key.split(SEP)
        kind = KINDS.get(parts[0])
        if kind is None or len(parts) <= kind.id_field:
            continue
        entity = parts[kind.id_field]
        p = memo.get(entity)
        if p is None:
            p = memo[entity] = kafka_partition(entity, partitions)
        if p not in keep:
            gone.append(key)
    for key in gone:
        del table[key]
    return len(gone)
