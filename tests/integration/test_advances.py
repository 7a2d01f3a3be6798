"""Advances on a running worker, as an outside client sees them: a merchant's draws decided against its
line on `advance-decisions` (read_committed), a merchant repayment paying them down, and the merchant's
credit read back from the HTTP API against a brute force over what was sent.

    orders ── line 800.00 ── advances a1 500 (approve), a2 400 (decline), a1 again (nothing), a3 300
    (approve) ── one decision each ── repayment 600.00 ── outstanding 800 - 600 = 200.00 in the API
"""

from __future__ import annotations

import random

import aiohttp
import pytest

from streamrisk.core.decisions import stable_id
from streamrisk.credit import default_policy
from streamrisk.loadgen import patterns as pt
from streamrisk.loadgen.synthetic import Record
from tests.harness import Client, WorkerProcess, get_json, now_ms, unique, wait_for
from tests.integration.test_replay_credit import WORKER_ENV, run_with_kills, send_all

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

M = "m-adv"
CONTRACT_FIELDS = {"decision_id", "event_id", "merchant_id", "ts", "action", "reasons", "credit_line",
                   "credit_outstanding", "decided_at"}


async def merchant_credit(http: aiohttp.ClientSession, worker: WorkerProcess) -> dict | None:
    return await get_json(http, worker, f"/merchants/{M}")


async def test_advances_are_decided_against_the_line_and_repayments_pay_them_down(
    client: Client, worker: WorkerProcess
) -> None:
    t = now_ms() - 60_000
    for rec in (pt.order("o1:placed", M, "b1", 1000.0, t),
                pt.order("o1:fulfilled", M, "b1", 1000.0, t + 1000, status="fulfilled")):
        await client.send(*rec)
    async with aiohttp.ClientSession() as http:
        async def line_published() -> bool | object:
            body = await merchant_credit(http, worker)
            return (body is not None and body["credit_line"] == 800.0) or body

        await wait_for(line_published, 60, "the merchant's line of 800.00")
        sent = [pt.advance("a1", M, 500.0, t + 2000), pt.advance("a2", M, 400.0, t + 3000),
                pt.advance("a1", M, 500.0, t + 2000),  # the producer's retry: no second draw, no decision
                pt.advance("a3", M, 300.0, t + 4000)]
        for rec in sent:
            await client.send(*rec)
        await client.send("advances", M, {"event_id": "a-bad", "ts": t, "merchant_id": M, "amount": 5.0})
        decisions = await client.read("advance-decisions", until=lambda rs: len(rs) >= 3, settle=1.5,
                                      committed=True, with_key=True)
        dead = await client.read("dead-letters", until=lambda rs: len(rs) >= 1, committed=True)

        assert len(decisions) == 3, decisions  # one per advance
        by_id = {d["event_id"]: d for d in decisions}
        assert all(d.keys() >= CONTRACT_FIELDS and d["_key"] == M.encode() for d in decisions)
        fields = ("action", "reasons", "credit_line", "credit_outstanding")
        got = [tuple(by_id[e][k] for k in fields) for e in ("a1", "a2", "a3")]
        assert got == [("approve", [], 800.0, 500.0), ("decline", ["ADVANCE_OVER_LINE"], 800.0, 500.0),
                       ("approve", [], 800.0, 800.0)]
        version = default_policy().version
        assert by_id["a2"]["decision_id"] == stable_id("advance-decision", "a2", version)
        assert [d["source_topic"] for d in dead] == [client.prefix + "advances"]
        assert "missing required field 'currency'" in dead[0]["error"]

        await client.send(*pt.repayment("r1", M, 600.0, t + 5000, t + 86_400_000, account_type="merchant"))
        # The brute force: the approved advances less the repayment.
        approved = sum(d["amount"] for d in decisions if d["action"] == "approve")
        owed = approved - 600.0

        async def repaid() -> bool | object:
            body = await merchant_credit(http, worker)
            return (body is not None and body["credit_outstanding"] == owed) or body

        await wait_for(repaid, 60, f"outstanding {owed}")
        body = await merchant_credit(http, worker)
    assert body is not None
    fields = ("credit_line", "credit_outstanding", "credit_available", "credit_utilization")
    assert [body[k] for k in fields] == [800.0, 200.0, 600.0, 0.25]


# -- after repeated SIGKILLs: every advance decided as one clean pass would, drawn once

MERCHANTS = 6
ADVANCES = 900
KILLS = 3


def advance_backlog(tag: str, t0: int) -> list[Record]:
    rng = random.Random(11)
    out: list[Record] = []
    for i in range(ADVANCES):
        merchant = f"{tag}-m{i % MERCHANTS}"
        value = {"event_id": f"{tag}-a{i}", "ts": t0 + i, "merchant_id": merchant,
                 "amount": float(rng.choice([1, 5, 20, 60])), "currency": "CNY"}
        out.append(Record("advances", merchant, value))
        if i % 10 == 9:  # a producer's retry of an earlier advance: no second draw, no decision
            out.append(out[rng.randrange(len(out))])
    return out


def brute_force(records: list[Record], line: int) -> tuple[dict[str, str], dict[str, int]]:
    """Each advance once, in the order sent (one merchant's are on one partition): approved within
    `line` less what the merchant owes. The decisions, and what each merchant owes."""
    decided: dict[str, str] = {}
    owed: dict[str, int] = {}
    for r in records:
        eid, m = r.value["event_id"], r.key
        if eid in decided:
            continue
        amount = round(r.value["amount"] * 100)
        ok = amount <= line - owed.get(m, 0)
        owed[m] = owed.get(m, 0) + (amount if ok else 0)
        decided[eid] = "approve" if ok else "decline"
    return decided, owed


async def test_advances_are_drawn_once_and_decided_as_one_clean_pass_after_repeated_sigkills(
    broker_kind: str, bootstrap: str, tmp_path
) -> None:
    if broker_kind == "kafka":
        # Open (docs/known-limits.md): on Apache Kafka, beside another test module (-n 2), the worker
        # started after the second kill did not reach the next kill mark in 60 s in 4 of 11 runs on
        # 2026-12-07, its log silent; not yet understood. After the 5 ms verification retry it passed 4 of 4
        # runs beside test_replay_credit.py, then stalled once in a full ./scripts/test. The same kills
        # with payments (test_replay_credit.py) and this test on Tansu pass.
        pytest.skip("open: a restarted worker's progress stalls on Apache Kafka (known-limits.md)")
    tag = unique("advkill")
    prefix = tag + "."
    app_id = unique("app")
    n = 0

    def worker() -> WorkerProcess:
        nonlocal n
        n += 1
        # A long commit interval and small batches: each kill leaves many batches uncommitted, whose
        # state records reached the changelog in part (at-least-once) or were aborted (exactly-once).
        return WorkerProcess(bootstrap, prefix, app_id, tmp_path / f"w{n}", **WORKER_ENV).start()

    t0 = now_ms() - 3_600_000
    merchants = [f"{tag}-m{i}" for i in range(MERCHANTS)]
    advances = advance_backlog(tag, t0 + 10_000)
    want, owed = brute_force(advances, 80_000)
    assert set(want.values()) == {"approve", "decline"}
    w = worker()
    try:
        async with Client(bootstrap, prefix) as client, aiohttp.ClientSession() as http:
            for m in merchants:  # a line of 800.00 each
                await client.send(*pt.order(f"{m}-o:placed", m, "b1", 1000.0, t0))
                await client.send(*pt.order(f"{m}-o:fulfilled", m, "b1", 1000.0, t0 + 1000,
                                            status="fulfilled"))

            async def lines() -> bool | object:
                bodies = [await get_json(http, w, f"/merchants/{m}") for m in merchants]
                return all(b is not None and b["credit_line"] == 800.0 for b in bodies) or bodies

            await wait_for(lines, 60, "every merchant's line of 800.00")
            await send_all(client, advances)
            w = await run_with_kills(http, w, worker, KILLS, len(advances) // (KILLS + 2))
            decisions = await client.read(
                "advance-decisions", until=lambda rs: {r["event_id"] for r in rs} >= set(want), timeout=90,
                settle=1.0, committed=True)
            # Every decision sent, also a repeat after a kill, is the clean pass's.
            got: dict[str, set[tuple[str, str]]] = {}
            for d in decisions:
                got.setdefault(d["event_id"], set()).add((d["decision_id"], d["action"]))
            wrong = {e: (sorted(a for _, a in got[e]), want[e]) for e in want
                     if {a for _, a in got[e]} != {want[e]} or len(got[e]) != 1}
            assert not wrong, list(wrong.items())[:5]
            if broker_kind == "kafka":  # exactly-once: one decision record per advance, kills or not
                assert len(decisions) == len(want)

            # Repayments of part of what each owes, with a kill while they are applied.
            later = []
            for i, m in enumerate(merchants):
                part = owed[m] // 3
                rep = pt.repayment(f"{tag}-r{i}", m, part / 100, t0 + 20_000, t0 + 86_400_000,
                                   account_type="merchant")
                later.append(Record(*rep))
                owed[m] -= part
            await send_all(client, later)
            w.kill()
            w = worker()

            async def balances() -> bool | str:
                for m in merchants:
                    body = await get_json(http, w, f"/merchants/{m}")
                    if body is None:
                        return f"{m}: not served yet"
                    if round(body["credit_outstanding"] * 100) != owed[m]:
                        return f"{m}: credit_outstanding {body['credit_outstanding']} != {owed[m] / 100}"
                    if round(body["credit_available"] * 100) != 80_000 - owed[m]:
                        return f"{m}: credit_available {body['credit_available']}"
                return True

            await wait_for(balances, 60, "every merchant owes its approved advances less its repayment")
    finally:
        w.stop()
