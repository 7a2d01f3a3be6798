"""Merchant risk summaries: published compactly by a merchant's owner, read by every worker.

A summary is the merchant's features as one JSON array, `[schema, as_of, value, value, ...]`, values in
the order of the worker's merchant feature names, and `schema` a short fingerprint of those names: the
names are not repeated in every record (about a third of the bytes), and a worker configured with other
windows ignores (and counts) a summary it would misread. Workers keep the raw bytes and decode a
merchant's summary once, when a payment at that merchant first needs it after it changed.

Bounded (`STREAMRISK_MERCHANT_CACHE_SIZE` > 0): the raw summaries live in a `SummaryStore` (on the
worker, a local RocksDB copy of the compacted topic: runtime/summary_store.py) and only the most recently
used merchants' decoded features in memory. A miss reads the store, which holds every summary applied,
so a payment is decided on the same features as with the whole table in memory: only slower.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol

import orjson


def schema_of(names: Sequence[str]) -> str:
    """A fingerprint of the feature names, in order."""
    return hashlib.blake2b(",".join(names).encode(), digest_size=4).hexdigest()


def encode_summary(schema: str, as_of: int, features: Mapping[str, float]) -> bytes:
    return orjson.dumps([schema, as_of, *features.values()])


# The raw summary of a merchant whose features were put decoded (put_features). It is never decoded:
# a merchant leaves `_decoded` only when `put` replaces or removes its raw summary.
_APPLIED = b""


class SummaryStore(Protocol):
    """Merchant id -> raw summary, off the heap (a bounded view's backing store)."""

    def get(self, merchant_id: str) -> bytes | None: ...
    def put(self, merchant_id: str, value: bytes) -> None: ...
    def delete(self, merchant_id: str) -> None: ...
    def keys(self) -> Iterator[str]: ...


class DictSummaryStore:
    """A SummaryStore in a dict: for tests and offline runs of a bounded view (it bounds only the
    decoded features; the raw summaries stay in memory)."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    def get(self, merchant_id: str) -> bytes | None:
        return self.data.get(merchant_id)

    def put(self, merchant_id: str, value: bytes) -> None:
        self.data[merchant_id] = value

    def delete(self, merchant_id: str) -> None:
        self.data.pop(merchant_id, None)

    def keys(self) -> Iterator[str]:
        return iter(list(self.data))


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
        elif self._readable(value):
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
        features = self._decode(raw)
        if features is None:
            del self._raw[merchant_id]
            self.bad += 1
            return default
        self._decoded[merchant_id] = features
        self.decoded += 1
        return features

    def _decode(self, raw: bytes) -> dict[str, float] | None:
        """A summary's features, or None when it cannot be read."""
        try:
            row = orjson.loads(raw)
            features = dict(zip(self.names, row[2:], strict=True))
            # Rules compare features with numbers: a summary not written by a worker could hold
            # anything (JSON numbers are finite: orjson rejects NaN and Infinity).
            if not all(type(v) is int or type(v) is float for v in features.values()):
                raise TypeError("a feature is not a number")
        except (orjson.JSONDecodeError, ValueError, TypeError):
            return None
        return features

    def _readable(self, value: bytes) -> bool:
        return value[2:10] == self._schema and value[:2] == b'["'

    def __getitem__(self, merchant_id: str) -> Mapping[str, float]:
        hit = self.get(merchant_id)
        if hit is None:
            raise KeyError(merchant_id)
        return hit

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)


# A merchant the store has no summary of, remembered in the cache like one it has (so a payment at a
# merchant never summarised does not read the store each time); `put` of a summary replaces it.
_ABSENT: Mapping[str, float] = {}


class BoundedMerchantView(MerchantView):
    """A MerchantView that keeps the decoded features of at most `cache_size` merchants in memory (the
    least recently used leave first) and every raw summary in `store`, read back on a miss."""

    def __init__(self, names: Sequence[str], cache_size: int, store: SummaryStore) -> None:
        super().__init__(names)
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1 (got {cache_size})")
        self.cache_size = cache_size
        self.store = store
        self._cache: OrderedDict[str, Mapping[str, float]] = OrderedDict()
        self._count = 0  # merchants in the store
        self.misses = 0  # lookups the cache could not answer (the store read)

    def put(self, merchant_id: str, value: bytes | None) -> None:
        if value is not None and not self._readable(value):
            self.bad += 1  # only workers write this topic; a stray record keeps the previous summary
            return
        self._cache.pop(merchant_id, None)
        had = self.store.get(merchant_id) is not None
        if value is None:
            if had:
                self.store.delete(merchant_id)
                self._count -= 1
        else:
            self.store.put(merchant_id, value)
            self._count += not had

    def put_features(self, merchant_id: str, features: Mapping[str, float]) -> None:
        """`put` of the merchant's summary, through the store (a miss later reads what a worker would)."""
        self.put(merchant_id, encode_summary(self.schema, 0, features))

    def get(self, merchant_id: str, default: Mapping[str, float] | None = None) -> Mapping[str, float] | None:  # type: ignore[override]
        cache = self._cache
        hit = cache.get(merchant_id)
        if hit is not None:
            cache.move_to_end(merchant_id)
            return default if hit is _ABSENT else hit
        self.misses += 1
        raw = self.store.get(merchant_id)
        features: Mapping[str, float] | None = None
        if raw is not None:
            features = self._decode(raw)
            if features is None:
                self.store.delete(merchant_id)
                self._count -= 1
                self.bad += 1
            else:
                self.decoded += 1
        cache[merchant_id] = _ABSENT if features is None else features
        if len(cache) > self.cache_size:
            cache.popitem(last=False)
        return default if features is None else features

    def __iter__(self) -> Iterator[str]:
        return self.store.keys()

    def __len__(self) -> int:
        return self._count

    @property
    def cached(self) -> int:
        return len(self._cache)
