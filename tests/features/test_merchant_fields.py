"""The merchant rules read a few of a merchant's features after every event, without building them all:
those they read are the values `features()` gives at the same point, whichever of the two read last."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamrisk.features.entities import MerchantState
from streamrisk.features.merchant_fields import MerchantFields
from streamrisk.rules import default_ruleset
from streamrisk.state.chunks import HeldEvent

from .test_merchant_features import CFG, M_PLACED, SERIES, T0

ALL = tuple(MerchantState(CFG).features())

event = st.tuples(
    st.sampled_from(SERIES),
    st.integers(-2 * 86_400_000, 3_600_000),  # ms from the previous event: late ones too
    st.integers(1, 10**6),
    st.sampled_from(["fields", "features", "both"]),  # what is read right after it
)


@settings(max_examples=200, deadline=None)
@given(st.lists(event, min_size=1, max_size=40), st.lists(st.sampled_from(ALL), max_size=6))
def test_fields_read_after_each_event_equal_features(events: list[tuple], some: list[str]) -> None:
    every, chosen = MerchantFields(CFG, ALL), MerchantFields(CFG, (*some, "no_such_feature"))
    m, twin = MerchantState(CFG), MerchantState(CFG)  # twin: only ever read whole
    ts = T0
    for i, (series, step, amount, read) in enumerate(events):
        ts += step
        cats = (f"buyer-{amount % 5}",) if series == M_PLACED else ()
        ev = HeldEvent(f"e{i}", series, ts, amount, cats)
        m.apply(ev)
        twin.apply(ev)
        whole = twin.features()
        if read in ("fields", "both"):
            assert every.read(m) == whole
            assert chosen.read(m) == {n: whole[n] for n in some}
        if read in ("features", "both"):
            assert m.features() == whole
    # Reading fields or features leaves the windows as reading features alone does.
    assert (m.late_events, m.too_old_events) == (twin.late_events, twin.too_old_events)


def test_the_default_merchant_rules_read_features_that_exist() -> None:
    names = default_ruleset().merchant_fields
    assert names and set(names) <= set(ALL)
    assert set(MerchantFields(CFG, names).read(MerchantState(CFG))) == set(names)
