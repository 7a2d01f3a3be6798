"""Contract input records and their validation: bytes in, a typed record or an InvalidRecord reason out."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

PAYMENT_METHODS = frozenset({"credit_line", "card", "wallet"})
ORDER_STATUSES = frozenset({"placed", "fulfilled", "refunded", "cancelled"})
ACCOUNT_TYPES = frozenset({"user", "merchant"})
MINOR_PER_MAJOR = 100  # every accepted currency has two decimals (CNY by default)
# Defaults of the configurable bounds (STREAMRISK_MAX_AMOUNT, STREAMRISK_MAX_RECORD_BYTES). An amount's
# minor units must fit the window engine's int64 columns: 10**12 major units is 10**14 minor, with room.
MAX_AMOUNT = 10**12
MAX_RECORD_BYTES = 64 * 1024
# Ids are entity keys in the state table: bounded, and free of control characters so that no id can
# contain the store's key separator (0x1F) or otherwise collide with another id's keys.
MAX_ID_CHARS = 256
MAX_STRING_CHARS = 256
_has_control = re.compile("[\x00-\x1f\x7f-\x9f]").search
SHOWN_CHARS = 60


def shown(v: object) -> str:
    """`repr(v)` bounded to a few dozen characters, so an error text never repeats a huge value."""
    r = repr(v)
    if len(r) <= SHOWN_CHARS:
        return r
    size = f"{len(v)} chars" if isinstance(v, str) else f"{len(v)} bytes" if isinstance(v, bytes) else ""
    return f"{r[:SHOWN_CHARS]}... ({size or f'{len(r)} chars as text'})"


class InvalidRecord(ValueError):
    """A record that breaks the contract; the message is the human-readable dead-letter reason."""


@dataclass(slots=True, frozen=True)
class Payment:
    event_id: str
    ts: int
    user_id: str
    merchant_id: str
    amount: int  # minor units
    currency: str
    method: str
    device_id: str
    ip: str
    country: str


@dataclass(slots=True, frozen=True)
class Order:
    event_id: str
    ts: int
    order_id: str
    merchant_id: str
    user_id: str
    amount: int
    currency: str
    status: str


@dataclass(slots=True, frozen=True)
class Repayment:
    event_id: str
    ts: int
    account_type: str
    account_id: str
    amount: int
    currency: str
    due_ts: int

    @property
    def on_time(self) -> bool:
        return self.ts <= self.due_ts


@dataclass(slots=True, frozen=True)
class Chargeback:
    event_id: str
    ts: int
    payment_id: str
    user_id: str
    merchant_id: str
    amount: int
    currency: str
    reason: str


@dataclass(slots=True, frozen=True)
class Advance:
    """A merchant's draw on its credit line (supply-chain finance)."""

    event_id: str
    ts: int
    merchant_id: str
    amount: int
    currency: str


Record = Payment | Order | Repayment | Chargeback | Advance


def to_minor(amount: float) -> int:
    """Major units (JSON number) to exact integer minor units."""
    return round(amount * MINOR_PER_MAJOR)


def to_major(minor: int) -> float:
    return minor / MINOR_PER_MAJOR


def _required(d: dict, name: str) -> Any:
    try:
        return d[name]
    except KeyError:
        raise InvalidRecord(f"missing required field {name!r}") from None


def _string_problem(name: str, v: object, *, is_id: bool = False) -> None:
    """Raise InvalidRecord saying which rule a string field broke."""
    if type(v) is not str or not v:
        raise InvalidRecord(f"{name} must be a non-empty string (got {shown(v)})")
    limit = MAX_ID_CHARS if is_id else MAX_STRING_CHARS
    if len(v) > limit:
        raise InvalidRecord(f"{name} must be at most {limit} characters (got {len(v)})")
    bad = _has_control(v)
    if is_id and bad is not None:
        raise InvalidRecord(
            f"{name} must not contain control characters (got U+{ord(bad.group()):04X} at index "
            f"{bad.start()} of {shown(v)})"
        )


def check_id(name: str, v: object) -> str:
    """`v` as an id (non-empty string, at most MAX_ID_CHARS characters, no control characters), or
    InvalidRecord naming `name` and the rule it broke."""
    if type(v) is not str or not v or len(v) > MAX_ID_CHARS or (
        not v.isprintable() and _has_control(v) is not None
    ):
        _string_problem(name, v, is_id=True)
    return v  # type: ignore[return-value]


class Validator:
    """Parses one topic's records; built once per worker so the hot path only does lookups."""

    __slots__ = ("_currencies", "_max_amount", "_max_bytes", "_skew_ms")

    def __init__(
        self,
        currencies: frozenset[str],
        max_future_skew_ms: int,
        max_amount: int | float = MAX_AMOUNT,
        max_record_bytes: int = MAX_RECORD_BYTES,
    ) -> None:
        self._currencies = currencies
        self._skew_ms = max_future_skew_ms
        self._max_amount = max_amount
        self._max_bytes = max_record_bytes

    # -- field readers: each raises InvalidRecord naming the field and what was wrong. The checks of
    # a valid value are one condition; only a failing one works out which rule it broke.
    @staticmethod
    def _str(d: dict, name: str) -> str:
        v = _required(d, name)
        if type(v) is not str or not v or len(v) > MAX_STRING_CHARS:
            _string_problem(name, v)
        return v

    @staticmethod
    def _id(d: dict, name: str) -> str:
        """A required id: non-empty, at most MAX_ID_CHARS characters, no control characters."""
        v = _required(d, name)
        if type(v) is not str or not v or len(v) > MAX_ID_CHARS or (
            not v.isprintable() and _has_control(v) is not None  # printable: no regex needed
        ):
            _string_problem(name, v, is_id=True)
        return v

    @staticmethod
    def _opt_str(d: dict, name: str, *, is_id: bool = False) -> str:
        v = d.get(name)
        if v is None:
            return ""
        if type(v) is not str:
            raise InvalidRecord(f"{name} must be a string when present (got {shown(v)})")
        if len(v) > MAX_STRING_CHARS or (is_id and not v.isprintable() and _has_control(v) is not None):
            _string_problem(name, v, is_id=is_id)
        return v

    @property
    def max_amount_minor(self) -> int:
        """The largest accepted amount in minor units (STREAMRISK_MAX_AMOUNT)."""
        return int(self._max_amount * MINOR_PER_MAJOR)

    def _ts(self, d: dict, name: str, now_ms: int, *, future_ok: bool = False) -> int:
        return self.event_time(name, _required(d, name), now_ms, future_ok=future_ok)

    def event_time(self, name: str, v: object, now_ms: int, *, future_ok: bool = False) -> int:
        """`v` as an event time: an integer >= 0, and (unless `future_ok`) at most the allowed skew
        (STREAMRISK_MAX_FUTURE_SKEW_MS) ahead of `now_ms`; else InvalidRecord naming `name`."""
        # bool is an int subclass in Python; a JSON true is not a time.
        if type(v) is not int:
            raise InvalidRecord(f"{name} must be an integer epoch-milliseconds time (got {shown(v)})")
        if v < 0:
            raise InvalidRecord(f"{name} must be >= 0 (got {v})")
        if not future_ok and v > now_ms + self._skew_ms:
            raise InvalidRecord(
                f"{name} {v} is {v - now_ms} ms in the future, more than the allowed skew of "
                f"{self._skew_ms} ms"
            )
        return v

    def _amount(self, d: dict) -> int:
        v = _required(d, "amount")
        if type(v) is not int and type(v) is not float:
            raise InvalidRecord(f"amount must be a number (got {shown(v)})")
        if type(v) is float and not math.isfinite(v):
            raise InvalidRecord(f"amount must be finite (got {v!r})")
        # Before to_minor: a huge amount would overflow the window engine's int64 columns (and
        # -1e308 * 100 is -inf).
        if v <= 0:
            raise InvalidRecord(f"amount must be > 0 (got {shown(v)})")
        if v > self._max_amount:
            raise InvalidRecord(
                f"amount must be at most {self._max_amount} (STREAMRISK_MAX_AMOUNT; got {shown(v)})"
            )
        minor = to_minor(v)
        if minor <= 0:
            raise InvalidRecord(f"amount must be > 0 once rounded to minor units (got {v!r})")
        return minor

    def _currency(self, d: dict) -> str:
        c = self._str(d, "currency")
        if c not in self._currencies:
            raise InvalidRecord(
                f"currency {shown(c)} is not accepted (accepted: {', '.join(sorted(self._currencies))})"
            )
        return c

    @staticmethod
    def _enum(d: dict, name: str, allowed: frozenset[str]) -> str:
        v = Validator._str(d, name)
        if v not in allowed:
            raise InvalidRecord(f"{name} must be one of {', '.join(sorted(allowed))} (got {shown(v)})")
        return v

    @staticmethod
    def _key(key: bytes | None, expected: str, field_name: str) -> None:
        # State is partitioned by the message key; a record keyed otherwise would land on a worker
        # that does not own its entity and silently split that entity's features.
        if key is None or key != expected.encode():
            raise InvalidRecord(
                f"message key must be the record's {field_name} {shown(expected)} (got {shown(key)})"
            )

    def _object(self, key: bytes | None, value: bytes | None) -> dict:
        d = self.json_value(key, value, "a JSON object")
        if type(d) is not dict:
            raise InvalidRecord(f"value must be a JSON object (got {type(d).__name__})")
        return d

    def json_value(self, key: bytes | None, value: bytes | None, expected: str) -> Any:
        """The record's value decoded, within the record size limit; InvalidRecord otherwise.
        `expected` names what a tombstone stands in place of."""
        if value is None:
            raise InvalidRecord(f"empty message value (tombstone) where {expected} was expected")
        size = len(value) + (len(key) if key else 0)
        if size > self._max_bytes:
            raise InvalidRecord(
                f"record is {size} bytes (key and value), more than the limit of {self._max_bytes} "
                "(STREAMRISK_MAX_RECORD_BYTES)"
            )
        try:
            d = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            hint = ""
            if b"NaN" in value or b"Infinity" in value:
                # Python's json.dumps writes these for float('nan'); say what the producer did wrong.
                hint = " (NaN and Infinity are not JSON numbers: amounts must be finite)"
            raise InvalidRecord(f"value is not valid JSON{hint}: {str(exc)[:200]}") from None
        return d

    # -- one parser per input topic
    def payment(self, key: bytes | None, value: bytes | None, now_ms: int) -> Payment:
        d = self._object(key, value)
        p = Payment(
            event_id=self._id(d, "event_id"),
            ts=self._ts(d, "ts", now_ms),
            user_id=self._id(d, "user_id"),
            merchant_id=self._id(d, "merchant_id"),
            amount=self._amount(d),
            currency=self._currency(d),
            method=self._enum(d, "method", PAYMENT_METHODS),
            device_id=self._opt_str(d, "device_id", is_id=True),
            ip=self._opt_str(d, "ip"),
            country=self._opt_str(d, "country"),
        )
        self._key(key, p.user_id, "user_id")
        return p

    def order(self, key: bytes | None, value: bytes | None, now_ms: int) -> Order:
        d = self._object(key, value)
        o = Order(
            event_id=self._id(d, "event_id"),
            ts=self._ts(d, "ts", now_ms),
            order_id=self._id(d, "order_id"),
            merchant_id=self._id(d, "merchant_id"),
            user_id=self._id(d, "user_id"),
            amount=self._amount(d),
            currency=self._currency(d),
            status=self._enum(d, "status", ORDER_STATUSES),
        )
        self._key(key, o.merchant_id, "merchant_id")
        return o

    def repayment(self, key: bytes | None, value: bytes | None, now_ms: int) -> Repayment:
        d = self._object(key, value)
        r = Repayment(
            event_id=self._id(d, "event_id"),
            ts=self._ts(d, "ts", now_ms),
            account_type=self._enum(d, "account_type", ACCOUNT_TYPES),
            account_id=self._id(d, "account_id"),
            amount=self._amount(d),
            currency=self._currency(d),
            due_ts=self._ts(d, "due_ts", now_ms, future_ok=True),
        )
        self._key(key, r.account_id, "account_id")
        return r

    def chargeback(self, key: bytes | None, value: bytes | None, now_ms: int) -> Chargeback:
        d = self._object(key, value)
        c = Chargeback(
            event_id=self._id(d, "event_id"),
            ts=self._ts(d, "ts", now_ms),
            payment_id=self._id(d, "payment_id"),
            user_id=self._id(d, "user_id"),
            merchant_id=self._id(d, "merchant_id"),
            amount=self._amount(d),
            currency=self._currency(d),
            reason=self._str(d, "reason"),
        )
        self._key(key, c.user_id, "user_id")
        return c

    def advance(self, key: bytes | None, value: bytes | None, now_ms: int) -> Advance:
        d = self._object(key, value)
        a = Advance(
            event_id=self._id(d, "event_id"),
            ts=self._ts(d, "ts", now_ms),
            merchant_id=self._id(d, "merchant_id"),
            amount=self._amount(d),
            currency=self._currency(d),
        )
        self._key(key, a.merchant_id, "merchant_id")
        return a

    def parser_for(self, kind: str) -> Callable[[bytes | None, bytes | None, int], Record]:
        """The parser for a contract input topic name (without prefix)."""
        return {
            "payments": self.payment,
            "orders": self.order,
            "repayments": self.repayment,
            "chargebacks": self.chargeback,
            "advances": self.advance,
        }[kind]
