"""Rebuilding an entity in bulk from its chunks equals the state built one event at a time."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrisk.features.entities import (
    DAY_MS,
    HOUR_MS,
    M_CANCELLED,
    M_CHARGEBACK,
    M_FULFILLED,
    M_PAYMENT,
    M_PLACED,
    M_REFUNDED,
    M_REPAYMENT,
    U_CHARGEBACK,
    U_PAYMENT,
    U_REPAYMENT,
    MerchantState,
    UserState,
    WindowConfig,
)
from streamrisk.state.chunks import HeldEvent, chunk_rows
from streamrisk.state.kv import DictKV
from streamrisk.state.store import EntityStore

MIN_MS = 60_000
T0 = 1_800_000_000_000
# Short feature windows next to the fixed 30-day rate windows and a 10-day settlement period, so a
# few dozen events spread over ~100 days cross every horizon and expire whole chunks.
CFG = WindowConfig({"5m": 5 * MIN_MS, "1d": DAY_MS, "7d": 7 * DAY_MS}, settlement_ms=10 * DAY_MS)
CHUNK = 4  # small chunks: many closed, expired and open-chunk cases per example

KINDS: dict[str, tuple[bytes, Callable[[], UserState | MerchantState], list[int], set[int]]] = {
    # kind -> (key prefix, factory, series codes, series carrying categories)
    "user": (b"u", lambda: UserState(CFG), [U_PAYMENT, U_CHARGEBACK, U_REPAYMENT, 7], {U_PAYMENT}),
    "merchant": (
        b"m",
        lambda: MerchantState(CFG),
        [M_PLACED, M_FULFILLED, M_REFUNDED, M_PAYMENT, M_CHARGEBACK, M_REPAYMENT, M_CANCELLED],
        {M_PLACED},
    ),
}
N_DIMS = {b"u": 2, b"m": 1}


def days(hi: int) -> st.SearchStrategy[int]:
    # Whole days give or take 1 ms, so event times land on and next to the window and
    # retention boundaries often.
    return st.tuples(st.integers(0, hi), st.sampled_from([0, 0, 1, -1])).map(
        lambda t: max(0, t[0] * DAY_MS + t[1])
    )


# One step: (series index, clock advance, lateness, value, category, flush after?, reuse an id?)
step = st.tuples(
    st.integers(0, 6),
    st.one_of(st.just(0), st.integers(0, 10 * MIN_MS), st.integers(0, 4 * DAY_MS), days(4)),
    st.one_of(st.just(0), st.integers(0, 2 * HOUR_MS), st.integers(0, 40 * DAY_MS), days(40)),
    st.integers(-10**6, 10**9),
    st.sampled_from(["a", "b", "c", "é\n\"x"]),
    st.booleans(),
    st.integers(0, 15),
)


def events(kind: str, steps: list[tuple]) -> list[tuple[HeldEvent, bool]]:
    prefix, _, codes, with_cats = KINDS[kind]
    out: list[tuple[HeldEvent, bool]] = []
    clock = T0
    for i, (s, adv, late, value, cat, flush, reuse) in enumerate(steps):
        series = codes[s % len(codes)]
        clock += adv
        cats = (cat, cat + "'")[: N_DIMS[prefix]] if series in with_cats else ()
        # A reused id is a redelivery: the store must drop it, live and after a rebuild alike.
        eid = out[reuse][0].event_id if reuse < len(out) and reuse % 5 == 0 else f"e{i}"
        out.append((HeldEvent(eid, series, clock - late, value, cats), flush))
    return out


def held(entity: UserState | MerchantState) -> dict[str, list]:
    """Each window's events inside its widest horizon at the entity's clock (without advancing)."""
    out = {}
    for name in entity.SERIES.values():
        w = getattr(entity, name)
        out[name] = [e for e in w.events() if e[0] > entity.latest - w.spec.widest]
    return out


def assert_same(live: EntityStore, rebuilt: EntityStore, entity_id: str) -> None:
    a, b = live.get(entity_id), rebuilt.get(entity_id)
    assert a is not None and b is not None
    assert b.latest == a.latest
    assert held(b) == held(a)
    assert b.features() == a.features()
    assert rebuilt.slots[entity_id].seen == live.slots[entity_id].seen


def feed(store: EntityStore, ev: HeldEvent) -> bool:
    slot = store.slot("x", 3)
    ok = store.add(slot, ev)
    store.expire(slot, slot.entity.latest)  # as the processor does after every add
    return ok


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(sorted(KINDS)),
    steps=st.lists(step, min_size=1, max_size=60),
    crash=st.integers(0, 60),
)
def test_rebuild_from_the_table_equals_incremental_state(kind: str, steps: list, crash: int) -> None:
    prefix, factory, _, _ = KINDS[kind]
    evs = events(kind, steps)
    crash = min(crash, len(evs))
    kv = DictKV()
    live = EntityStore(prefix, kv, factory, CFG.retention_ms, chunk_events=CHUNK)
    for ev, flush in evs[:crash]:
        feed(live, ev)
        if flush:
            live.flush()
    live.flush()  # the worker commits its state with its offsets, so a restart sees a flushed table
    # A new worker rebuilds from a copy of the table; both then take the rest of the stream.
    kv2 = DictKV()
    kv2.data = dict(kv.data)
    recovered = EntityStore(prefix, kv2, factory, CFG.retention_ms, chunk_events=CHUNK)
    if crash:
        assert_same(live, recovered, "x")
        assert recovered.rebuilt == 1
    for ev, flush in evs[crash:]:
        assert feed(recovered, ev) == feed(live, ev)
        if flush:
            live.flush()
            recovered.flush()
    live.flush()
    recovered.flush()
    assert_same(live, recovered, "x")
    assert kv2.data == kv.data  # and it went on writing exactly the chunks the live worker wrote
    # Finally a cold rebuild of the whole history.
    assert_same(live, EntityStore(prefix, kv, factory, CFG.retention_ms, chunk_events=CHUNK), "x")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(min_size=1),
            st.integers(0, 255),
            st.integers(-(2**63), 2**63 - 1),
            st.integers(-(2**63), 2**63 - 1),
            st.lists(st.text(), max_size=3),
        ),
        max_size=10,
    )
)
def test_chunk_rows_reads_what_encode_wrote(rows: list) -> None:
    blob = b"".join(HeldEvent(e, s, t, v, tuple(c)).encode() for e, s, t, v, c in rows)
    assert chunk_rows(blob) == [[e, s, t, v, *c] for e, s, t, v, c in rows]
    assert [orjson.loads(line) for line in blob.splitlines()] == chunk_rows(blob)
    assert list(HeldEvent.decode_chunk(blob)) == [HeldEvent(e, s, t, v, tuple(c)) for e, s, t, v, c in rows]


def test_rebuild_uses_the_bulk_path_not_apply() -> None:
    kv = DictKV()
    live = EntityStore(b"u", kv, lambda: UserState(CFG), CFG.retention_ms, chunk_events=CHUNK)
    for i in range(50):
        feed(live, HeldEvent(f"p{i}", U_PAYMENT, T0 + i * MIN_MS, 100 + i, ("m", "d")))
    live.flush()

    class NoApply(UserState):
        __slots__ = ()

        def apply(self, ev: HeldEvent) -> None:
            raise AssertionError("rebuild must not replay events one by one")

    cold = EntityStore(b"u", kv, lambda: NoApply(CFG), CFG.retention_ms, chunk_events=CHUNK)
    user = cold.get("x")
    assert user is not None
    # Every window already ends at the entity's clock, including series with no events.
    assert {w.end for w in (user.payments, user.chargebacks, user.repayments)} == {T0 + 49 * MIN_MS}
    assert user.features() == live.get("x").features()


def test_a_rebuilt_store_expires_chunks_exactly_when_the_live_one_does() -> None:
    kv = DictKV()
    r = CFG.retention_ms
    live = EntityStore(b"u", kv, lambda: UserState(CFG), r, chunk_events=CHUNK)
    for i in range(CHUNK):  # chunk 0: newest event at T0 + 3
        feed(live, HeldEvent(f"old{i}", U_PAYMENT, T0 + i, 1, ("m", "d")))
    feed(live, HeldEvent("edge", U_CHARGEBACK, T0 + 3 + r - 1, 1))  # T0 + 3 still retained
    live.flush()
    kv2 = DictKV()
    kv2.data = dict(kv.data)
    recovered = EntityStore(b"u", kv2, lambda: UserState(CFG), r, chunk_events=CHUNK)
    chunk0 = b"u\x1fx\x1f0"
    for eid, ts, kept in (("same", T0 + 3 + r - 1, True), ("past", T0 + 3 + r, False)):
        for store in (live, recovered):
            feed(store, HeldEvent(eid, U_CHARGEBACK, ts, 1))
            store.flush()
        assert (chunk0 in kv.data, chunk0 in kv2.data) == (kept, kept)
        assert kv2.data == kv.data
        assert_same(live, recovered, "x")
