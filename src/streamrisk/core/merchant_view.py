"""Merchant risk summaries: published compactly by a merchant's owner, read by every worker.

A summary is the merchant's features as one JSON array, `[schema, as_of, value, value, ...]`, values in
the order of the worker's merchant feature names, and `schema` a short fingerprint of those names: the
names are not repeated in every record (about a third of the bytes), and a worker configured with other
windows ignores (and counts) a summary it would misread. Workers keep the raw bytes and decode a
merchant's summary once, when a payment at that merchant first needs it after it changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence

import orjson


def schema_of(names: Sequence[str]) -> str:
    """A fingerprint of the feature names, in order."""
    return hashlib.blake2b(",".join(names).encode(), digest_size=4).hexdigest()


def encode_summary(schema: str, as_of: int, features: Mapping[str, float]) -> bytes:
    return orjson.dumps([schema, as_of, *features.values()])


# The raw summary of a merchant whose features were put decoded (put_features). It is never decoded:
# a merchant leaves `_decoded` only when `put` replaces or removes its raw summary.
_APPLIED = b""


class MerchantView(Mapping[str, Mapping[str, float]]):
    """Merchant id -> its newest published features, decoded on first use."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.schema = schema_of(self.names)
        self._schema = self.schema.encode()
        self._raw: dict[str, bytes] = {}
        self._decoded: dict[str, Mapping[str, float]] = {}
        self.bad = 0  # summaries that could not be read (another schema, or not ours)
        self.decoded = 0

    def put(self, merchant_id: str, value: bytes | None) -> None:
        """Apply one record of the summary topic; `None` (a tombstone) forgets the merchant."""
        if value is None:
            self._raw.pop(merchant_id, None)
            self._decoded.pop(merchant_id, None)
        elif value[2:10] == self._schema and value[:2] == b'["':
            self._raw[merchant_id] = value
            self._decoded.pop(merchant_id, None)
        else:
            # Only workers write this topic; a stray record keeps the previous summary.
            self.bad += 1

    def put_features(self, merchant_id: str, features: Mapping[str, float]) -> None:
        """What `put` of the merchant's summary then `get` give, without JSON in between: for a
        processor's own summaries when nothing else reads them (Processor.run_local). `features` are
        the merchant's in name order, ints and finite floats (JSON carries them exactly), handed over:
        never changed afterwards."""
        self._raw[merchant_id] = _APPLIED
        self._decoded[merchant_id] = features

    def get(self, merchant_id: str, default: Mapping[str, float] | None = None) -> Mapping[str, float] | None:  # type: ignore[override]
        hit = self._decoded.get(merchant_id)
        if hit is not None:
            return hit
        raw = self._raw.get(merchant_id)
        if raw is None:
            return default
        try:
            row = orjson.loads(raw)
            features = dict(zip(self.names, row[2:], strict=True))
            # Rules compare features with numbers: a summary not written by a worker could hold
            # anything (JSON numbers are finite: orjson rejects NaN and Infinity).
            if not all(type(v) is int or type(v) is float for v in features.values()):
                raise TypeError("a feature is not a number")
        except (orjson.JSONDecodeError, ValueError, TypeError):
            del self._raw[merchant_id]
            self.bad += 1
            return default
        self._decoded[merchant_id] = features
        self.decoded += 1
        return features

    def __getitem__(self, merchant_id: str) -> Mapping[str, float]:
        hit = self.get(merchant_id)
        if hit is None:
            raise KeyError(merchant_id)
        return hit

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)
