"""A merchant's features are read after each of its events and again for its summary: whatever was
read before, they describe every event applied so far."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamrisk.features.entities import (
    M_CANCELLED,
    M_CHARGEBACK,
    M_FULFILLED,
    M_PAYMENT,
    M_PLACED,
    M_REFUNDED,
    M_SETTLED_REFUND,
    MerchantState,
    WindowConfig,
)
from streamrisk.settings import Settings
from streamrisk.state.chunks import HeldEvent

T0 = 1_800_000_000_000
CFG = WindowConfig(Settings().windows)
SERIES = [M_PLACED, M_FULFILLED, M_REFUNDED, M_PAYMENT, M_CHARGEBACK, M_CANCELLED, M_SETTLED_REFUND]

event = st.tuples(
    st.sampled_from(SERIES),
    st.integers(-2 * 86_400_000, 3_600_000),  # ms from the previous event: late ones too
    st.integers(1, 10**6),
    st.sampled_from(["none", "features", "take"]),  # how the features are read right after it
)


@settings(max_examples=200, deadline=None)
@given(st.lists(event, min_size=1, max_size=40))
def test_features_read_between_events_are_those_of_all_events_so_far(events: list[tuple]) -> None:
    m = MerchantState(CFG)
    applied: list[HeldEvent] = []
    ts = T0
    for i, (series, step, amount, read) in enumerate(events):
        ts += step
        cats = (f"buyer-{amount % 5}",) if series == M_PLACED else ()
        ev = HeldEvent(f"e{i}", series, ts, amount, cats)
        m.apply(ev)
        applied.append(ev)
        if read == "none":
            continue
        fresh = MerchantState(CFG)
        for e in applied:
            fresh.apply(e)
        assert (m.features() if read == "features" else m.take_features()) == fresh.features()
