"""Hypothesis: after every step of random streams, every aggregate equals a brute-force oracle."""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from streamrisk.windows import SlidingWindows, WindowSpec

from .oracle import Oracle, assert_matches


class EagerCompaction(SlidingWindows):
    """Compacts and re-interns at every chance, so short streams exercise those paths."""

    trim_min = 1
    reintern_slack = 0


specs = st.builds(
    WindowSpec,
    horizons=st.lists(st.integers(1, 60), min_size=1, max_size=4),
    dims=st.sampled_from([(), ("merchant",), ("merchant", "device")]),
    track_max=st.booleans(),
    lateness=st.integers(0, 40),
    ids=st.booleans(),
)
impls = st.sampled_from([SlidingWindows, EagerCompaction])
values = st.one_of(
    st.integers(-50, 50),
    st.integers(-(10**15), 10**15),
    st.sampled_from([0, 1, 10**12, 10**12 + 1, -(2**62)]),
)
cat = st.sampled_from(["a", "b", "c", "d", "e"])
# ts offsets relative to the current end: mostly in order or slightly late, some far late
# (beyond lateness / too old), ties via offset 0.
offsets = st.one_of(st.integers(-5, 8), st.integers(-120, 0), st.just(0))
adds = st.tuples(st.just("add"), offsets, values, st.tuples(cat, cat))
ops = st.lists(
    st.one_of(
        adds,
        adds,
        adds,
        st.tuples(st.just("repeat")),
        st.tuples(st.just("advance"), st.integers(-10, 70)),
    ),
    min_size=10,
    max_size=80,
)


def run(impl: type[SlidingWindows], spec: WindowSpec, steps: list, check_each_rebuild: bool):
    w = impl(spec)
    o = Oracle(spec)
    last = None
    popped: list[int] = []
    for n, op in enumerate(steps):
        base = o.end or 0
        if op[0] == "add" or (op[0] == "repeat" and last is None):
            off, value, cats = op[1:] if op[0] == "add" else (0, 7, ("a", "a"))
            last = (base + off, value, cats[: len(spec.dims)])
        if op[0] == "advance":
            w.advance(base + op[1])
            o.advance(base + op[1])
        else:
            ts, value, cats = last
            path = w.add(ts, value, cats, eid=n)
            assert path == o.add(ts, value, cats, eid=n)
            event(path.name)
        assert_matches(w, o)
        if spec.ids:
            popped += w.pop_expired()
            assert sorted(popped) == o.expired_ids()
        if check_each_rebuild:
            r = impl.from_events(spec, w.events(), end=w.end)
            assert_matches(r, o, check_paths=False)
    return w, o


@settings(max_examples=500, deadline=None)
@given(impl=impls, spec=specs, steps=ops)
def test_every_aggregate_matches_oracle_after_every_step(impl, spec, steps):
    run(impl, spec, steps, check_each_rebuild=True)


@settings(max_examples=500, deadline=None)
@given(impl=impls, spec=specs, steps=ops, data=st.data())
def test_rebuild_from_all_accepted_events_equals_incremental_state(impl, spec, steps, data):
    _, o = run(impl, spec, steps, check_each_rebuild=False)
    # Input in random ts order (arrival order kept among equal ts), already-expired included.
    rng = data.draw(st.randoms(use_true_random=False))
    rank = {ts: rng.random() for ts, *_ in o.accepted}
    shuffled = sorted(o.accepted, key=lambda e: rank[e[0]])
    r = impl.from_events(spec, shuffled, end=o.end)
    assert_matches(r, o, check_paths=False)
    if spec.ids:
        assert sorted(r.pop_expired()) == o.expired_ids()


@settings(max_examples=500, deadline=None)
@given(impl=impls, spec=specs, before=ops, after=ops)
def test_rebuilt_window_keeps_matching_as_events_continue(impl, spec, before, after):
    w, o = run(impl, spec, before, check_each_rebuild=False)
    r = impl.from_events(spec, w.events(), end=w.end)
    last = None
    for n, op in enumerate(after, start=len(before)):
        base = o.end or 0
        if op[0] == "advance":
            r.advance(base + op[1])
            o.advance(base + op[1])
            continue
        if op[0] == "add" or last is None:
            off, value, cats = op[1:] if op[0] == "add" else (0, 7, ("a", "a"))
            last = (base + off, value, cats[: len(spec.dims)])
        ts, value, cats = last
        r.add(ts, value, cats, eid=n)
        o.add(ts, value, cats, eid=n)
        assert_matches(r, o, check_paths=False)
