"""Bad news on a running worker: a fraud chargeback freezes the user's limit at once, read back from
`credit-limit-adjustments` and `GET /users/{id}`.

    ten credit_line payments of 200.00 ── 10 decisions, outstanding 2000.00 (API)
    chargeback on one of them, reason "fraud" ── one adjustment 2000.00 -> 1800.00
                                                 [FRAUD_FREEZE, FRAUD_CHARGEBACK], naming the chargeback
                                                 API: frozen, limit 1800.00, nothing available
"""

from __future__ import annotations

import aiohttp
import pytest

from streamrisk.loadgen import patterns as pt
from tests.harness import Client, WorkerProcess, get_json, now_ms, unique, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HOUR, DAY = 3_600_000, 86_400_000


async def test_fraud_chargeback_freezes_the_limit_at_once(client: Client, worker: WorkerProcess) -> None:
    user = unique("u-cut")
    t0 = now_ms() - 3 * DAY
    payments = [pt.payment(f"{user}-p{i}", user, "shop", 200.0, t0 + i * HOUR, method="credit_line")
                for i in range(10)]
    for record in payments:
        await client.send(*record)
    decisions = await client.read("risk-decisions", until=lambda rs: len(rs) >= 10, timeout=60)
    assert {d["action"] for d in decisions} == {"approve"}
    async with aiohttp.ClientSession() as http:
        async def drawn() -> bool | object:
            body = await get_json(http, worker, f"/users/{user}")
            return (body is not None and body["credit_outstanding"] == 2000.0) or body

        await wait_for(drawn, 30, "ten draws applied")
        cb = pt.chargeback(f"{user}-cb", f"{user}-p4", user, "shop", 200.0, t0 + 2 * DAY, reason="fraud")
        await client.send(*cb)
        # Settle: a second adjustment would come right behind the first.
        limits = await client.read("credit-limit-adjustments", until=lambda rs: len(rs) >= 1, settle=2.0)
        body = await get_json(http, worker, f"/users/{user}")
    got_limits = [(a["user_id"], a["previous_limit"], a["new_limit"], a["reasons"], a["event_id"])
                  for a in limits]
    assert got_limits == [(user, 2000.0, 1800.0, ["FRAUD_FREEZE", "FRAUD_CHARGEBACK"], f"{user}-cb")]
    assert body is not None
    got = (body["credit_status"], body["credit_limit"], body["credit_outstanding"], body["credit_available"])
    assert got == ("frozen", 1800.0, 1800.0, 0.0)
    assert body["credit_adjustments"][0]["reasons"] == ["FRAUD_FREEZE", "FRAUD_CHARGEBACK"]
