"""Advances on a running worker, as an outside client sees them: a merchant's draws decided against its
line on `advance-decisions` (read_committed), a merchant repayment paying them down, and the merchant's
credit read back from the HTTP API against a brute force over what was sent.

    orders ── line 800.00 ── advances a1 500 (approve), a2 400 (decline), a1 again (nothing), a3 300
    (approve) ── one decision each ── repayment 600.00 ── outstanding 800 - 600 = 200.00 in the API
"""

from __future__ import annotations

import aiohttp
import pytest

from streamrisk.core.decisions import stable_id
from streamrisk.credit import default_policy
from streamrisk.loadgen import patterns as pt
from tests.harness import Client, WorkerProcess, get_json, now_ms, wait_for

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
