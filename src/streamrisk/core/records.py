"""What goes into and comes out of the processor: consumed records, outgoing records, counters, and
the named records of its hot path (a decision's outcome, a forwarded merchant event)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from .events import Payment, to_major


class Message(NamedTuple):
    """The part of a consumed Kafka record the processor needs."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


class Record(Protocol):
    """A consumed Kafka record as the processor reads it: a Message, or aiokafka's ConsumerRecord."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Out(NamedTuple):
    topic: str
    key: bytes | str | None
    value: dict[str, Any] | bytes | None  # None: a tombstone (merchant summaries of swept merchants)


# Slotted dataclasses rather than NamedTuples: cheaper to build, and built once per payment. Neither
# goes to orjson as it is (it writes a dataclass as an object, and refuses a NamedTuple): their
# stored and wire form is a JSON array, written by the code that owns the format.


@dataclass(slots=True)
class Outcome:
    """What a payment was decided: kept with it in the payment index (with the input offset it was
    decided at, payment_index.py) and carried to its merchant's owner on the forwarded payment."""

    action: str
    score: float
    rules_version: str
    reasons: Sequence[str]  # the reason codes, in the decision's order


# A forwarded event's array: its first fields, and the fields of a decided payment's.
FORWARDED_BARE, FORWARDED_DECIDED = 5, 9


@dataclass(slots=True)
class Forwarded:
    """A payment or chargeback of the user side, sent keyed by merchant to the merchant's owner on the
    internal merchant-events topic (merchant_side.py), and kept there among the merchant's last
    decisions (merchant_decisions.py).

    On the wire a JSON array (`row`): `[event_id, series, ts, amount, merchant_id]`, and after it, for
    a decided payment, `user_id, action, score, rules_version, *reasons`.
    """

    event_id: str  # the kind's letter ('p' or 'c') and the input event's id
    series: int
    ts: int
    amount: int  # minor units
    merchant_id: str
    user_id: str = ""  # given with the outcome
    outcome: Outcome | None = None

    def row(self) -> list[Any]:
        o = self.outcome
        if o is None:
            return [self.event_id, self.series, self.ts, self.amount, self.merchant_id]
        return [self.event_id, self.series, self.ts, self.amount, self.merchant_id, self.user_id,
                o.action, o.score, o.rules_version, *o.reasons]

    @classmethod
    def of(cls, row: list[Any]) -> Forwarded:
        """From its array: FORWARDED_BARE items, or at least FORWARDED_DECIDED (read_forwarded checks
        a record before it is trusted)."""
        if len(row) < FORWARDED_DECIDED:
            return cls(row[0], row[1], row[2], row[3], row[4])
        return cls(row[0], row[1], row[2], row[3], row[4], row[5], Outcome(row[6], row[7], row[8], row[9:]))


@dataclass
class Counters:
    """What the processor has seen, by kind; read by /stats and the CLI summary."""

    consumed: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    dead_letter_classes: dict[str, int] = field(default_factory=dict)  # by reason_class()
    duplicates: int = 0
    decisions: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)  # by reason code
    chargebacks_matched: int = 0
    chargebacks_unmatched: int = 0
    # Unmatched when they came, matched when their payment arrived after them.
    chargebacks_matched_late: int = 0
    decisions_replayed: int = 0  # stored decisions sent again for a payment read again
    mispartitioned: int = 0  # dead-lettered: not on the partition murmur2 gives their key
    failed_records: int = 0  # dead-lettered: processing raised (see faults.py)
    # Dead-lettered records of the internal merchant-events topic (not as workers write them).
    internal_rejected: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "consumed": dict(self.consumed),
            "dead_letters": self.dead_letters,
            "dead_letter_classes": dict(self.dead_letter_classes),
            "duplicates": self.duplicates,
            "decisions": dict(self.decisions),
            "alerts": dict(self.alerts),
            "chargebacks_matched": self.chargebacks_matched,
            "chargebacks_unmatched": self.chargebacks_unmatched,
            "chargebacks_matched_late": self.chargebacks_matched_late,
            "decisions_replayed": self.decisions_replayed,
            "mispartitioned": self.mispartitioned,
            "failed_records": self.failed_records,
            "internal_rejected": self.internal_rejected,
        }


def payment_fields(p: Payment) -> dict[str, Any]:
    """The `payment.*` namespace the rules read (absent optional strings are empty)."""
    return {
        "amount": to_major(p.amount),
        "currency": p.currency,
        "method": p.method,
        "merchant_id": p.merchant_id,
        "user_id": p.user_id,
        "device_id": p.device_id,
        "country": p.country,
        "ts": p.ts,
        "ip": p.ip,
        "event_id": p.event_id,
    }


def messages(events: Iterable[Any]) -> list[Message]:
    """Faust events to processor messages."""
    return [
        Message(
            e.message.topic, e.message.partition, e.message.offset, e.message.key, e.message.value
        )
        for e in events
    ]
