"""A seeded generator of hostile input over the five input topics, interleaved with valid records.

Every record says whether the contract calls it valid, so a test can check that each invalid one is
dead-lettered exactly once and each valid payment decided exactly once (tests/test_hostile_input.py
in-process, tests/integration/test_hostile_input.py through a worker on the broker).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from streamrisk.core.partitioning import kafka_partition

# Odd but valid ids: emoji, CJK, right-to-left, combining marks, zero-width joiners, the longest allowed.
ODD_IDS = [
    "🦊", "用户-七", "مستخدم", "e\u0301\u0301", "👩\u200d💻", "Ω≈ç√∫", "x" * 256, "\u2019q\u2019 id", "a b",
]
KEY_FIELD = {
    "payments": "user_id", "orders": "merchant_id", "repayments": "account_id", "chargebacks": "user_id",
    "advances": "merchant_id",
}
REQUIRED = {
    "payments": ["event_id", "ts", "user_id", "merchant_id", "amount", "currency", "method"],
    "orders": ["event_id", "ts", "order_id", "merchant_id", "user_id", "amount", "currency", "status"],
    "repayments": ["event_id", "ts", "account_type", "account_id", "amount", "currency", "due_ts"],
    "chargebacks": ["event_id", "ts", "payment_id", "user_id", "merchant_id", "amount", "currency", "reason"],
    "advances": ["event_id", "ts", "merchant_id", "amount", "currency"],
}


@dataclass
class Sent:
    topic: str  # contract name, without prefix
    key: bytes | None
    value: bytes | None
    valid: bool
    kind: str  # what the generator did, for failure messages
    partition: int | None = None  # None: the key's murmur2 partition
    event_id: str | None = None  # of a valid payment


class Hostile:
    """Seeded records; `partitions` is the input topics' partition count (for mispartitioned ones)."""

    def __init__(self, seed: int, now_ms: int, partitions: int = 4) -> None:
        self.rng = random.Random(seed)
        self.now = now_ms
        self.partitions = partitions
        self.n = 0

    def _eid(self, tag: str) -> str:
        self.n += 1
        return f"{tag}-{self.n}"

    def _ts(self) -> int:
        return self.now - self.rng.randrange(0, 3_600_000)

    def record(self, topic: str) -> dict[str, Any]:
        """A valid record of `topic`."""
        r = self.rng
        user = r.choice(ODD_IDS) if r.random() < 0.1 else f"user-{r.randrange(300)}"
        merchant = r.choice(ODD_IDS) if r.random() < 0.05 else f"merchant-{r.randrange(40)}"
        amount = r.choice([0.01, 1, 12.5, 99.99, 1234.56, 10**12])
        base = {"event_id": self._eid(topic[0]), "ts": self._ts(), "amount": amount, "currency": "CNY"}
        if topic == "payments":
            method = r.choice(["card", "wallet", "credit_line"])
            return {**base, "user_id": user, "merchant_id": merchant, "method": method,
                    "device_id": f"dev-{r.randrange(9)}"}
        if topic == "orders":
            return {**base, "order_id": self._eid("O"), "merchant_id": merchant, "user_id": user,
                    "status": r.choice(["placed", "fulfilled", "refunded", "cancelled"])}
        if topic == "repayments":
            kind = r.choice(["user", "merchant"])
            return {**base, "account_type": kind, "account_id": user if kind == "user" else merchant,
                    "due_ts": base["ts"] + r.randrange(-10**9, 10**12)}
        if topic == "advances":
            return {**base, "merchant_id": merchant}
        return {**base, "payment_id": self._eid("p"), "user_id": user, "merchant_id": merchant,
                "reason": r.choice(["fraud", "not received", "理由"])}

    def valid(self, topic: str) -> Sent:
        """A valid record, sometimes with extra fields or an extreme-but-valid time."""
        rec = self.record(topic)
        kind = "valid"
        roll = self.rng.random()
        if roll < 0.1:
            rec["extra"] = {"nested": [[[{"deep": list(range(5))}]]], "note": "ignored"}
            kind = "valid: extra fields"
        elif roll < 0.15:
            rec["ts"] = self.rng.choice([0, 1, self.now + 60_000])
            kind = "valid: extreme ts"
        key = rec[KEY_FIELD[topic]].encode()
        eid = rec["event_id"] if topic == "payments" else None
        return Sent(topic, key, orjson.dumps(rec), True, kind, event_id=eid)

    def invalid(self, topic: str) -> Sent:
        """One record the contract rejects, by a randomly chosen way of breaking it."""
        name, make = self.rng.choice(self._breakers)
        key, value, partition = make(self, topic)
        return Sent(topic, key, value, False, name, partition=partition)

    # -- ways to break a record: (key, value, partition or None)
    def _broken_utf8(self, topic: str) -> tuple[bytes | None, bytes | None, int | None]:
        rec = self.record(topic)
        raw = orjson.dumps(rec).replace(rec["event_id"].encode(), b"\xff\xfe\xc3(", 1)
        return self._key(rec, topic), raw, None

    def _empty(self, topic: str) -> tuple[bytes | None, bytes | None, int | None]:
        return b"user-1", self.rng.choice([b"", None, b"   ", b"\x00"]), None

    def _not_object(self, topic: str) -> tuple[bytes | None, bytes | None, int | None]:
        return b"user-1", self.rng.choice([b"[1, 2]", b'"text"', b"42", b"null", b"true", b"[]"]), None

    def _deep(self, topic: str) -> tuple[bytes | None, bytes | None, int | None]:
        depth = self.rng.choice([1100, 5000, 20_000])
        return b"user-1", b'{"x": ' + b"[" * depth + b"]" * depth + b"}", None

    def _huge_string(self, topic: str) -> tuple[bytes | None, bytes | None, int | None]:
        rec = self.record(topic)
        field = self.rng.choice(REQUIRED[topic][2:])
        rec[field] = "H" * self.rng.choice([300, 70_000])
        if field == KEY_FIELD[topic]:
            return rec[field].encode(), orjson.dumps(rec), None
        return self._key(rec, topic), orjson.dumps(rec), None

    def _huge_number(self, topic: str) -> tuple[bytes | None, bytes | None, int | None]:
        rec = self.record(topic)
        raw = orjson.dumps({**rec, "amount": 7})
        literal = self.rng.choice([b"1e300", b"1" + b"0" * 50, b"1e17", b"1000000000000.01", b"-1e308"])
        return self._key(rec, topic), raw.replace(b'"amount":7', b'"amount":' + literal), None

    def _not_finite(self, topic: str) -> tuple[bytes | None, bytes | None, int | None]:
        rec = self.record(topic)
        raw = orjson.dumps({**rec, "amount": 7})
        literal = self.rng.choice([b"NaN", b"Infinity", b"-Infinity"])
        return self._key(rec, topic), raw.replace(b'"amount":7', b'"amount":' + literal), None

    def _wrong_type(self, topic: str) -> tuple[bytes | None, bytes | None, int | None]:
        rec = self.record(topic)
        field, bad = self.rng.choice(
            [("ts", "2026-01-01"), ("ts", 1.5), ("ts", True), ("amount", "12.5"), ("amount", True),
             ("event_id", 12), ("currency", ["CNY"]), ("amount", None), ("ts", {"ms": 1})]
        )
        rec[field] = bad
        return self._key(rec, topic), orjson.dumps(rec), None

    def _missing(self, topic: str) -> tuple[bytes | None, bytes | None, int | None]:
        rec = self.record(topic)
        key = self._key(rec, topic)
        del rec[self.rng.choice([f for f in REQUIRED[topic] if f != KEY_FIELD[topic]])]
        return key, orjson.dumps(rec), None

    def _bad_value(self, topic: str) -> tuple[bytes | None, bytes | None, int | None]:
        rec = self.record(topic)
        field, bad = self.rng.choice(
            [("amount", 0), ("amount", -3), ("amount", 0.001), ("currency", "USD"), ("ts", -1),
             ("ts", self.now + 86_400_000), ("ts", 2**63 - 1)]
        )
        rec[field] = bad
        return self._key(rec, topic), orjson.dumps(rec), None

    def _bad_enum(self, topic: str) -> tuple[bytes | None, bytes | None, int | None]:
        rec = self.record(topic)
        field = {"payments": "method", "orders": "status", "repayments": "account_type"}.get(topic)
        if topic == "advances":  # no enum: an empty currency instead
            rec["currency"] = ""
        elif field is None:
            rec["reason"] = ""
        else:
            rec[field] = self.rng.choice(["cheque", "", "CARD", "🦊"])
        return self._key(rec, topic), orjson.dumps(rec), None

    def _bad_id(self, topic: str) -> tuple[bytes | None, bytes | None, int | None]:
        rec = self.record(topic)
        field = self.rng.choice([f for f in REQUIRED[topic] if f.endswith("_id")])
        rec[field] = self.rng.choice(["", "X\x1f0", "nul\x00", "tab\tid", "del\x7f", "c1\x85", "y" * 257])
        return self._key(rec, topic), orjson.dumps(rec), None

    def _key_mismatch(self, topic: str) -> tuple[bytes | None, bytes | None, int | None]:
        rec = self.record(topic)
        key = self.rng.choice([None, b"someone-else", b"\xff\xfe", rec[KEY_FIELD[topic]].encode() + b" "])
        return key, orjson.dumps(rec), None

    def _mispartitioned(self, topic: str) -> tuple[bytes | None, bytes | None, int | None]:
        rec = self.record(topic)
        key = self._key(rec, topic)
        right = kafka_partition(key, self.partitions)
        wrong = (right + self.rng.randrange(1, self.partitions)) % self.partitions
        return key, orjson.dumps(rec), wrong

    @staticmethod
    def _key(rec: dict[str, Any], topic: str) -> bytes:
        return str(rec[KEY_FIELD[topic]]).encode()

    _breakers: list[tuple[str, Callable[..., tuple[bytes | None, bytes | None, int | None]]]] = [
        ("broken UTF-8", _broken_utf8),
        ("empty or null value", _empty),
        ("non-object JSON", _not_object),
        ("deep nesting", _deep),
        ("huge string", _huge_string),
        ("huge number", _huge_number),
        ("NaN/Infinity", _not_finite),
        ("wrong type", _wrong_type),
        ("missing field", _missing),
        ("out-of-range value", _bad_value),
        ("unknown enum", _bad_enum),
        ("bad id", _bad_id),
        ("key mismatch", _key_mismatch),
        ("mispartitioned", _mispartitioned),
    ]

    def stream(self, total: int, valid_payments: int, valid_others: int) -> list[Sent]:
        """`total` records: the valid ones spread evenly among invalid ones over all five topics."""
        topics = list(KEY_FIELD)
        out = [self.valid("payments") for _ in range(valid_payments)]
        out += [self.valid(self.rng.choice(topics[1:])) for _ in range(valid_others)]
        out += [self.invalid(self.rng.choice(topics)) for _ in range(total - len(out))]
        self.rng.shuffle(out)
        return out
