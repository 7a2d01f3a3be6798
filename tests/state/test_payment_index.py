"""PaymentIndex: a late chargeback finds its payment, within bounded memory and changelog bytes."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrisk.core.records import Outcome
from streamrisk.settings import DAY_MS
from streamrisk.state.kv import DictKV
from streamrisk.state.payment_index import IndexedPayment, PaymentIndex
from streamrisk.state.sweep import PartitionClock

T0 = 1_800_000_000_000
HOUR_MS = DAY_MS // 24
P = 3  # partition


def meta_key(user: str) -> bytes:
    return b"x\x1f" + user.encode()


def chunk_key(user: str, seq: int) -> bytes:
    return b"x\x1f" + user.encode() + b"\x1f" + str(seq).encode()


def fill(idx: PaymentIndex, user: str, start: int, days: int, per_day: int = 1, tag: str = "f") -> int:
    """`per_day` filler payments a day for `days` days after `start`, one flush a day; returns last ts."""
    ts = start
    for d in range(1, days + 1):
        for k in range(per_day):
            ts = start + d * DAY_MS + k
            idx.add(P, user, f"{tag}-{user}-{d}-{k}", "m-fill", ts, 100)
        idx.flush()
    return ts


def test_found_5_and_179_days_later() -> None:
    kv = DictKV()
    idx = PaymentIndex(kv, chunk_lines=8)
    idx.add(P, "u1", "pay-1", "m-7", T0, 12_345)
    idx.flush()
    fill(idx, "u1", T0, 5, per_day=3)
    assert idx.find("u1", "pay-1") == IndexedPayment("pay-1", "m-7", T0, 12_345, None)
    fill(idx, "u1", T0 + 5 * DAY_MS, 174, per_day=3, tag="g")  # up to day 179, many chunks closed
    assert idx.find("u1", "pay-1") == IndexedPayment("pay-1", "m-7", T0, 12_345, None)
    assert PaymentIndex(kv).find("u1", "pay-1") is not None


def test_not_found_after_retention_and_chunk_tombstoned() -> None:
    kv = DictKV()
    idx = PaymentIndex(kv, chunk_lines=4)
    idx.add(P, "u1", "pay-old", "m-1", T0, 500)
    idx.flush()
    fill(idx, "u1", T0, 200)  # one payment a day for 200 days
    assert idx.find("u1", "pay-old") is None
    assert (chunk_key("u1", 0), None) in kv.writes  # the chunk that held it: one tombstone
    assert chunk_key("u1", 0) not in kv.data
    assert idx.expired_chunks > 0
    # what is left: only chunks holding payments within ~180 days (+ one chunk's span) of the newest
    left = [k for k in kv.data if k != meta_key("u1")]
    assert len(left) <= 180 // 4 + 2
    assert idx.find("u1", f"f-u1-{200 - 179}-0") is not None  # 179 days before the newest


def test_rare_payer_old_payment_expires_without_filling_a_chunk() -> None:
    kv = DictKV()
    idx = PaymentIndex(kv)  # default chunk of 64 lines: the open chunk holds a single payment
    idx.add(P, "u1", "pay-old", "m-1", T0, 500)
    idx.flush()
    idx.add(P, "u1", "pay-new", "m-1", T0 + 180 * DAY_MS, 700)
    idx.flush()
    assert idx.find("u1", "pay-old") is None
    assert idx.find("u1", "pay-new") is not None
    assert (chunk_key("u1", 0), None) in kv.writes
    assert PaymentIndex(kv).find("u1", "pay-old") is None


def test_chunks_span_bounded_time_so_a_rare_payer_does_not_keep_years() -> None:
    """Twice a month for two years: a chunk spans at most 30 days, so payments go about 180 + 30 days
    after the newest, and each batch rewrites a chunk of a few lines, not of the user's history."""
    kv = DictKV()
    idx = PaymentIndex(kv)  # 64 lines, 30-day span, 180-day retention
    last = T0
    for i in range(48):
        last = T0 + i * 15 * DAY_MS
        idx.add(P, "u1", f"p{i}", "m", last, 100)
        idx.flush()
        written = [v for k, v in kv.writes if v is not None and k != meta_key("u1")]
        assert all(v.count(b"\n") <= 3 for v in written)
        kv.writes.clear()
    for i in range(48):
        age = last - (T0 + i * 15 * DAY_MS)
        if age < 180 * DAY_MS:
            assert idx.find("u1", f"p{i}") is not None
        elif age > (180 + 30) * DAY_MS:
            assert idx.find("u1", f"p{i}") is None
    assert len(kv.data) <= (180 + 30) // 15 + 2


def test_retention_boundary() -> None:
    kv = DictKV()
    idx = PaymentIndex(kv, chunk_lines=1)  # one payment a chunk: expiry is exact
    idx.add(P, "u1", "a", "m", T0, 1)
    idx.add(P, "u1", "b", "m", T0 + 1, 1)
    idx.add(P, "u1", "c", "m", T0 + 180 * DAY_MS, 1)  # exactly 180 days after "a"
    idx.flush()
    assert idx.find("u1", "a") is None
    assert idx.find("u1", "b") is not None  # 180 days minus 1 ms
    assert PaymentIndex(kv).find("u1", "b") is not None


def test_find_before_flush_in_the_same_batch() -> None:
    kv = DictKV()
    idx = PaymentIndex(kv, chunk_lines=4)
    for i in range(10):  # two chunks close within the batch
        idx.add(P, "u1", f"p{i}", "m", T0 + i * HOUR_MS, i)
    for i in range(10):
        assert idx.find("u1", f"p{i}") == IndexedPayment(f"p{i}", "m", T0 + i * HOUR_MS, i, None)
    assert idx.find("u1", "p10") is None
    assert idx.find("u2", "p1") is None
    assert idx.flush() == 2  # open chunk + meta


def test_find_after_restart() -> None:
    kv = DictKV()
    idx = PaymentIndex(kv, chunk_lines=4)
    for i in range(10):
        idx.add(P, "u1", f"p{i}", f"m{i}", T0 + i * HOUR_MS, i)
    idx.flush()
    idx.forget()
    again = PaymentIndex(kv, chunk_lines=4)
    for i in range(10):
        assert again.find("u1", f"p{i}") == IndexedPayment(f"p{i}", f"m{i}", T0 + i * HOUR_MS, i, None)
    # the restarted worker appends after the last payment and keeps finding all of them
    again.add(P, "u1", "p10", "m", T0 + 10 * HOUR_MS, 10)
    again.flush()
    assert all(PaymentIndex(kv).find("u1", f"p{i}") is not None for i in range(11))


def test_small_users_have_no_meta_until_a_chunk_closes() -> None:
    kv = DictKV()
    idx = PaymentIndex(kv, chunk_lines=4)
    for i in range(4):
        idx.add(P, "u1", f"p{i}", "m", T0 + i, 1)
    idx.flush()
    assert set(kv.data) == {chunk_key("u1", 0)}
    idx.add(P, "u1", "p4", "m", T0 + 4, 1)
    idx.flush()
    assert set(kv.data) == {chunk_key("u1", 0), chunk_key("u1", 1), meta_key("u1")}
    assert orjson.loads(kv.data[meta_key("u1")]) == {"first": 0, "next": 1, "head": T0 + 3, "top": T0 + 3}


def changelog_bytes(kv: DictKV) -> int:
    return sum(len(k) + (len(v) if v is not None else 0) for k, v in kv.writes)


def test_changelog_bytes_per_payment_stay_flat() -> None:
    """One payment per batch for one user (the worst case): bytes per batch are bounded by the chunk
    size and do not grow with the payments already indexed."""
    kv = DictKV()
    idx = PaymentIndex(kv, chunk_lines=16)
    per_batch: list[int] = []
    for i in range(4_000):  # 4000 payments in 40 days: nothing expires, 250 chunks live
        idx.add(P, "user-1", f"pay-{i:06d}", "merchant-42", T0 + i * 15 * 60_000, 10_000 + i)
        idx.flush()
        per_batch.append(changelog_bytes(kv))
        kv.writes.clear()
    line = len(orjson.dumps(["pay-000000", "merchant-42", T0, 10_000])) + 1
    bound = 2 * (16 * line + 20) + 80  # a full chunk closing, a fresh open chunk, the meta
    assert max(per_batch) <= bound
    early, late = sum(per_batch[:800]) / 800, sum(per_batch[-800:]) / 800
    assert late <= early * 1.05
    assert len(kv.data[meta_key("user-1")]) < 80  # the meta does not grow with the chunks


def test_changelog_writes_per_batch_bounded_by_touched_users() -> None:
    kv = DictKV()
    idx = PaymentIndex(kv, chunk_lines=8)
    for b in range(50):
        for u in range(20):
            for k in range(3):
                idx.add(P, f"u{u}", f"p-{b}-{u}-{k}", "m", T0 + b * HOUR_MS + k, 1)
        assert idx.pending_users == 20  # only what this batch touched is in memory
        assert idx.flush() <= 2 * 20
        assert idx.pending_users == 0
        puts = [k for k, _ in kv.writes]
        assert len(puts) <= 3 * 20  # open chunk, meta, and at most one chunk closing mid-batch each
        kv.writes.clear()


def test_mark_fraud_persists_across_restart() -> None:
    kv = DictKV()
    idx = PaymentIndex(kv, chunk_lines=4)
    idx.add(P, "u1", "p1", "m1", T0, 999)
    idx.add(P, "u1", "p2", "m1", T0 + 1, 5)
    got = idx.mark_fraud(P, "u1", "p1", "cb-1")  # in the unflushed open chunk
    assert got == IndexedPayment("p1", "m1", T0, 999, "cb-1")
    assert idx.find("u1", "p1") == got
    idx.flush()
    again = PaymentIndex(kv, chunk_lines=4)
    assert again.find("u1", "p1") == got
    assert again.find("u1", "p2") == IndexedPayment("p2", "m1", T0 + 1, 5, None)
    # marked in the flushed open chunk of a user this batch has not touched: written at once
    assert again.mark_fraud(P, "u1", "p2", "cb-2") is not None
    assert PaymentIndex(kv).find("u1", "p2") == IndexedPayment("p2", "m1", T0 + 1, 5, "cb-2")


def test_mark_fraud_on_a_closed_chunk() -> None:
    kv = DictKV()
    idx = PaymentIndex(kv, chunk_lines=4)
    for i in range(10):
        idx.add(P, "u1", f"p{i}", "m", T0 + i, i)
    idx.flush()
    before = kv.data[chunk_key("u1", 0)]
    kv.writes.clear()
    idx.add(P, "u1", "p10", "m", T0 + 10, 10)  # the user is in the current batch
    got = idx.mark_fraud(P, "u1", "p2", "cb-9")
    assert got == IndexedPayment("p2", "m", T0 + 2, 2, "cb-9")
    assert [k for k, _ in kv.writes] == [chunk_key("u1", 0)]  # the closed chunk, rewritten once
    after = kv.data[chunk_key("u1", 0)]
    assert after.split(b"\n")[:2] == before.split(b"\n")[:2]  # the other lines are untouched
    assert after.split(b"\n")[3:] == before.split(b"\n")[3:]
    idx.flush()
    assert PaymentIndex(kv).find("u1", "p2") == got
    assert PaymentIndex(kv).find("u1", "p3") == IndexedPayment("p3", "m", T0 + 3, 3, None)


def test_mark_twice_keeps_the_first_chargeback() -> None:
    kv = DictKV()
    idx = PaymentIndex(kv)
    idx.add(P, "u1", "p1", "m", T0, 1)
    idx.flush()
    assert idx.mark_fraud(P, "u1", "p1", "cb-1") is not None
    kv.writes.clear()
    assert idx.mark_fraud(P, "u1", "p1", "cb-2") == IndexedPayment("p1", "m", T0, 1, "cb-1")
    assert kv.writes == []
    assert idx.marked == 1


def test_mark_unknown_payment_returns_none_and_writes_nothing() -> None:
    kv = DictKV()
    idx = PaymentIndex(kv)
    idx.add(P, "u1", "p1", "m", T0, 1)
    idx.flush()
    kv.writes.clear()
    assert idx.mark_fraud(P, "u1", "nope", "cb") is None
    assert idx.mark_fraud(P, "u2", "p1", "cb") is None  # another user's payment
    assert kv.writes == []


def test_many_users_do_not_interfere() -> None:
    kv = DictKV()
    idx = PaymentIndex(kv, chunk_lines=3)
    users = [f"user-{i}" for i in range(30)] + ["user-1x", "user-", "user-1\u00e9"]
    for b in range(20):
        for j, u in enumerate(users):
            idx.add(P + j % 2, u, f"{u}/p{b}", f"m{j}", T0 + b * DAY_MS + j, b * 100 + j)
        idx.flush()
    idx.mark_fraud(P, "user-1", "user-1/p3", "cb-1")
    for j, u in enumerate(users):
        for b in range(20):
            got = idx.find(u, f"{u}/p{b}")
            cb = "cb-1" if (u, b) == ("user-1", 3) else None
            assert got == IndexedPayment(f"{u}/p{b}", f"m{j}", T0 + b * DAY_MS + j, b * 100 + j, cb)
            assert idx.find("user-2" if u != "user-2" else "user-3", f"{u}/p{b}") is None


def test_awkward_ids_and_lookalike_merchants() -> None:
    """Ids with JSON syntax in them, and a merchant id that looks like another payment's line prefix."""
    kv = DictKV()
    idx = PaymentIndex(kv, chunk_lines=4)
    ids = ['p"1', "p,2", "p[3]", "p\n4", "p\\5", "p\u00e96", "p\U0001f4b37", "", "p1"]
    for i, pid in enumerate(ids):
        idx.add(P, "u1", pid, '["p1",' if i == 0 else "m", T0 + i, i)
    for i, pid in enumerate(ids):
        assert idx.find("u1", pid) == IndexedPayment(pid, '["p1",' if i == 0 else "m", T0 + i, i, None)
    assert idx.mark_fraud(P, "u1", "p1", "cb") == IndexedPayment("p1", "m", T0 + 8, 8, "cb")
    idx.flush()
    again = PaymentIndex(kv, chunk_lines=4)
    assert again.find("u1", 'p"1') == IndexedPayment('p"1', '["p1",', T0, 0, None)
    assert again.find("u1", "p1") == IndexedPayment("p1", "m", T0 + 8, 8, "cb")
    assert again.find("u1", "p") is None


def test_id_prefix_inside_another_line_is_not_a_match() -> None:
    """A merchant id ending in "[" and a chargeback id starting with "," put the JSON prefix of the
    odd payment id below inside the first line; the lookup must skip it and find the real line."""
    odd = f",{T0},5,null,"
    kv = DictKV()
    idx = PaymentIndex(kv)
    idx.add(P, "u1", "p0", "a[", T0, 5)
    idx.mark_fraud(P, "u1", "p0", ",x")
    idx.add(P, "u1", odd, "m", T0 + 1, 7)
    assert b"[" + orjson.dumps(odd) + b"," in bytes(idx._open["u1"].buf).split(b"\n")[0]
    assert idx.find("u1", odd) == IndexedPayment(odd, "m", T0 + 1, 7, None)
    assert idx.mark_fraud(P, "u1", odd, "cb") == IndexedPayment(odd, "m", T0 + 1, 7, "cb")
    idx.flush()
    assert PaymentIndex(kv).find("u1", "p0") == IndexedPayment("p0", "a[", T0, 5, ",x")
    assert PaymentIndex(kv).find("u1", odd) == IndexedPayment(odd, "m", T0 + 1, 7, "cb")


def test_span_counts_late_payments() -> None:
    kv = DictKV()
    idx = PaymentIndex(kv, chunk_span_ms=10 * DAY_MS)
    idx.add(P, "u1", "a", "m", T0, 1)
    idx.add(P, "u1", "b", "m", T0 - 5 * DAY_MS, 1)  # late: the chunk now spans 5 days
    idx.add(P, "u1", "c", "m", T0 + 5 * DAY_MS, 1)  # 10 days: still one chunk
    idx.add(P, "u1", "d", "m", T0 + 6 * DAY_MS, 1)  # 11 days: a new chunk
    idx.flush()
    assert set(kv.data) == {chunk_key("u1", 0), chunk_key("u1", 1), meta_key("u1")}
    assert kv.data[chunk_key("u1", 1)].count(b"\n") == 1


def test_duplicate_add_does_not_corrupt() -> None:
    kv = DictKV()
    idx = PaymentIndex(kv, chunk_lines=2)
    idx.add(P, "u1", "p1", "m", T0, 1)
    idx.add(P, "u1", "p2", "m", T0 + 1, 2)
    idx.add(P, "u1", "p1", "m", T0 + 2, 3)  # lands in the next chunk
    idx.add(P, "u1", "p1", "m", T0 + 3, 4)  # and again, same chunk
    idx.flush()
    assert idx.find("u1", "p1") in {IndexedPayment("p1", "m", T0 + t, t + 1, None) for t in (0, 2, 3)}
    marked = idx.mark_fraud(P, "u1", "p1", "cb")
    assert marked is not None
    assert idx.find("u1", "p1") == marked  # find and mark agree on which one
    assert PaymentIndex(kv).find("u1", "p2") == IndexedPayment("p2", "m", T0 + 1, 2, None)
    # newest chunk first (the first line of it that matches), before and after a restart
    assert idx.find("u1", "p1") == IndexedPayment("p1", "m", T0 + 2, 3, "cb")
    assert PaymentIndex(kv).find("u1", "p1") == IndexedPayment("p1", "m", T0 + 2, 3, "cb")


def test_forget_after_flush_keeps_everything() -> None:
    kv = DictKV()
    idx = PaymentIndex(kv, chunk_lines=4)
    for i in range(6):
        idx.add(P, "u1", f"p{i}", "m", T0 + i, i)
    idx.flush()
    idx.forget()
    assert idx.pending_users == 0
    idx.add(P, "u1", "p6", "m", T0 + 6, 6)
    idx.flush()
    assert all(idx.find("u1", f"p{i}") is not None for i in range(7))


# -- property: against a dict oracle

RET = 100 * DAY_MS
CH = 3
USERS = ["a", "b", "c"]

op = st.one_of(
    # add: user, days forward of the clock, days late (0 for most), amount
    st.tuples(
        st.just("add"),
        st.sampled_from(USERS),
        st.integers(0, 40),
        st.one_of(st.just(0), st.just(0), st.integers(0, 150)),
        st.integers(0, 10**9),
    ),
    st.tuples(st.just("find"), st.sampled_from(USERS), st.integers(0, 10**6)),
    st.tuples(st.just("mark"), st.integers(0, 10**6), st.integers(0, 10**6)),
    st.tuples(st.just("flush")),
    st.tuples(st.just("restart")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=80), st.sampled_from([0, 10 * DAY_MS, 10**15]))
def test_matches_a_dict_oracle(ops: list[tuple], span: int) -> None:
    """Whatever is found equals the oracle (marks included); everything within the retention of its
    user's newest payment is found; a flush + restart changes no answer; no chunk key leaks."""
    kv = DictKV()
    idx = PaymentIndex(kv, retention_ms=RET, chunk_lines=CH, chunk_span_ms=span)
    oracle: dict[str, tuple[str, IndexedPayment]] = {}  # pid -> (user, record)
    order: list[str] = []
    newest: dict[str, int] = {}
    clock = T0
    n_cb = 0

    def must_find(pid: str) -> bool:
        user, rec = oracle[pid]
        return rec.ts > newest[user] - RET

    def check(user: str, pid: str, got: IndexedPayment | None) -> None:
        owner, rec = oracle[pid]
        if user != owner:
            assert got is None
        elif got is not None:
            assert got == rec
        else:
            assert not must_find(pid)

    for o in ops:
        if o[0] == "add":
            _, user, fwd, late, amount = o
            clock += fwd * DAY_MS
            ts = clock - late * DAY_MS
            pid = f'p"{len(order)},'  # JSON syntax in ids
            idx.add(P, user, pid, f"m{amount % 7}", ts, amount)
            oracle[pid] = (user, IndexedPayment(pid, f"m{amount % 7}", ts, amount, None))
            order.append(pid)
            newest[user] = max(newest.get(user, ts), ts)
        elif o[0] == "find" and order:
            pid = order[o[2] % len(order)]
            check(o[1], pid, idx.find(o[1], pid))
        elif o[0] == "mark" and order:
            pid = order[o[1] % len(order)]
            user, rec = oracle[pid]
            n_cb += 1
            got = idx.mark_fraud(P, user, pid, f"cb{n_cb}")
            if got is not None:
                if rec.chargeback_id is None:
                    rec = IndexedPayment(rec.payment_id, rec.merchant_id, rec.ts, rec.amount, f"cb{n_cb}")
                    oracle[pid] = (user, rec)
                assert got == rec
            else:
                assert not must_find(pid)
        elif o[0] == "flush":
            assert idx.flush() <= 2 * len(USERS)
            assert idx.pending_users == 0
        elif o[0] == "restart":
            idx.flush()
            idx = PaymentIndex(kv, retention_ms=RET, chunk_lines=CH, chunk_span_ms=span)

    before = {pid: idx.find(user, pid) for pid, (user, _) in oracle.items()}
    for pid, (user, _) in oracle.items():
        check(user, pid, before[pid])
    idx.flush()
    again = PaymentIndex(kv, retention_ms=RET, chunk_lines=CH, chunk_span_ms=span)
    assert {pid: again.find(user, pid) for pid, (user, _) in oracle.items()} == before

    # the KV holds exactly the chunks first..next of each user (expired ones were tombstoned)
    for user in newest:
        raw = kv.data.get(meta_key(user))
        m = orjson.loads(raw) if raw else {"first": 0, "next": 0}
        prefix = meta_key(user) + b"\x1f"
        seqs = {int(k[len(prefix) :]) for k in kv.data if k.startswith(prefix)}
        assert seqs == set(range(m["first"], m["next"] + 1))


# -- property: what the index remembers of open chunks between batches changes nothing it writes

shape_op = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(USERS), st.integers(0, 40), st.integers(0, 3)),
    st.tuples(st.just("mark"), st.integers(0, 10**6)),
    st.tuples(st.just("flush")),
    st.tuples(st.just("sweep")),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(shape_op, max_size=80))
def test_remembered_chunk_shapes_write_what_decoding_would(ops: list[tuple]) -> None:
    """An index that keeps its open chunks' line counts and times between batches writes the same
    records as one that decodes every chunk again (it forgets after each flush), whatever marks
    (which rewrite a chunk outside the batch) and sweeps happen in between."""
    clocks = [PartitionClock(0), PartitionClock(0)]
    kvs = [DictKV(), DictKV()]
    idxs = [PaymentIndex(kv, retention_ms=RET, chunk_lines=CH, clock=c, partition_of=lambda _u: P)
            for kv, c in zip(kvs, clocks, strict=True)]
    paid: list[tuple[str, str]] = []
    clock = T0
    for o in ops:
        for i, (idx, kv) in enumerate(zip(idxs, kvs, strict=True)):
            if o[0] == "add":
                _, user, fwd, late = o
                ts = clock + fwd * DAY_MS - late * DAY_MS
                clocks[i].advance(P, ts)
                idx.add(P, user, f"p{len(paid)}", "m", ts, 1)
            elif o[0] == "mark" and paid:
                user, pid = paid[o[1] % len(paid)]
                idx.mark_fraud(P, user, pid, f"cb{o[1]}")
            elif o[0] == "flush":
                idx.flush()
                if i == 1:
                    idx.forget()
            elif o[0] == "sweep":
                idx.flush()
                if i == 1:
                    idx.forget()
                for key in list(kv.data):
                    idx.sweep_key(key)
        if o[0] == "add":
            clock += o[2] * DAY_MS
            paid.append((o[1], f"p{len(paid)}"))
        assert kvs[0].writes == kvs[1].writes


def test_lines_keep_their_array_format_and_lines_written_before_the_named_records_read_the_same() -> None:
    # A decision's outcome is a named record in memory and the same array on disk as before it was:
    # [payment_id, merchant_id, ts, amount, [offset, action, score, rules_version, *reasons]], with
    # [offset] for an entry indexed with its offset only (the credit book's orders), null for neither.
    kv = DictKV()
    idx = PaymentIndex(kv)
    decided = Outcome("review", 0.7, "v1", ("VELOCITY_5M", "NEW_DEVICE"))
    idx.add(P, "u1", "p1", "m1", T0, 500, 41, decided)
    idx.add(P, "u1", "p2", "m1", T0 + 1, 600, 42)
    idx.add(P, "u1", "p3", "m1", T0 + 2, 700)
    idx.flush()
    assert kv.get(chunk_key("u1", 0)) == (
        b'["p1","m1",1800000000000,500,[41,"review",0.7,"v1","VELOCITY_5M","NEW_DEVICE"]]\n'
        b'["p2","m1",1800000000001,600,[42]]\n'
        b'["p3","m1",1800000000002,700,null]\n'
    )
    # As an earlier version wrote them (one marked as fraud), read by this one.
    old = DictKV()
    old.put(P, chunk_key("u2", 0), b'["q1","m",1,5,[7,"decline",1.0,"v2"],"cb-1",9]\n["q2","m",2,6,[8]]\n')
    again = PaymentIndex(old)
    declined = Outcome("decline", 1.0, "v2", [])
    marked = IndexedPayment("q1", "m", 1, 5, "cb-1", declined, chargeback_offset=9, offset=7)
    assert again.find("u2", "q1") == marked
    assert again.find("u2", "q2") == IndexedPayment("q2", "m", 2, 6, None, offset=8)
    found = PaymentIndex(kv).find("u1", "p1")
    assert found is not None and found.offset == 41 and found.outcome is not None
    assert (found.outcome.action, found.outcome.score, found.outcome.rules_version) == ("review", 0.7, "v1")
    assert list(found.outcome.reasons) == ["VELOCITY_5M", "NEW_DEVICE"]
