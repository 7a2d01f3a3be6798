"""Risk-based pricing on a running worker: the `pd` and `price_bp` an adjustment carries on its topic are the
ones `GET /users/{id}` and `GET /merchants/{id}` show for the account it left, and `/metrics` exports the
expected loss they imply.

    user:     credit_line payment 1000.00 of 2000.00 ── outstanding 1000.00 (API)
              repayment 100.00, half a day past due ── cut 2000.00 -> 1600.00 REPAYMENT_PAST_DUE
                                                        pd = logistic(-4.8 + 1.5 x 900/1600 + 0.9 x 1 late)
    merchant: order 1000.00 placed and fulfilled ── line 0 -> 800.00 RECEIVABLES, pd = logistic(-5.0)
"""

from __future__ import annotations

import math

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamrisk.loadgen import patterns as pt
from tests.harness import Client, WorkerProcess, get_json, now_ms, unique, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HOUR, DAY = 3_600_000, 86_400_000


def logistic(z: float) -> float:
    return round(1 / (1 + math.exp(-z)), 4)


async def test_adjustments_carry_the_pd_and_price_of_the_api(client: Client, worker: WorkerProcess) -> None:
    user, merchant = unique("u-price"), unique("m-price")
    t0 = now_ms() - 3 * DAY
    await client.send(*pt.payment(f"{user}-p", user, "shop", 1000.0, t0, method="credit_line"))
    await client.read("risk-decisions", until=lambda rs: len(rs) >= 1, timeout=60)
    async with aiohttp.ClientSession() as http:
        async def drawn() -> bool | object:
            body = await get_json(http, worker, f"/users/{user}")
            return (body is not None and body["credit_outstanding"] == 1000.0) or body

        await wait_for(drawn, 30, "the draw applied")
        await client.send(*pt.repayment(f"{user}-r", user, 100.0, t0 + DAY, t0 + 12 * HOUR))
        await client.send(*pt.order(f"{merchant}-o:placed", merchant, user, 1000.0, t0))
        await client.send(*pt.order(f"{merchant}-o:fulfilled", merchant, user, 1000.0, t0 + HOUR,
                                    status="fulfilled"))
        limits = await client.read("credit-limit-adjustments", until=lambda rs: len(rs) >= 1, settle=2.0)
        lines = await client.read("credit-line-adjustments", until=lambda rs: len(rs) >= 1, settle=2.0)
        # The merchant's exposure is what it owes: an advance of half its line.
        await client.send(*pt.advance(f"{merchant}-a", merchant, 400.0, t0 + 2 * HOUR))
        await client.read("advance-decisions", until=lambda rs: any(
            r["event_id"] == f"{merchant}-a" for r in rs), timeout=60)
        body = await get_json(http, worker, f"/users/{user}")
        mbody = await get_json(http, worker, f"/merchants/{merchant}")
        async with http.get(worker.url("/metrics")) as resp:
            metrics = await resp.text()

    pd = logistic(-4.8 + 1.5 * 900 / 1600 + 0.9)
    assert [(a["new_limit"], a["reasons"], a["pd"], a["price_bp"]) for a in limits] == [
        (1600.0, ["REPAYMENT_PAST_DUE"], pd, 2200)]
    assert body is not None and (body["credit_limit"], body["pd"], body["price_bp"]) == (1600.0, pd, 2200)
    assert [(a["new_line"], a["pd"], a["price_bp"]) for a in lines] == [(800.0, logistic(-5.0), 900)]
    assert mbody is not None and (mbody["pd"], mbody["price_bp"]) == (logistic(-5.0), 900)

    # Expected loss on /metrics: at least this user's 0.6 x pd x 900.00 in its band (the worker's other
    # tests' accounts add theirs).
    loss = {tuple(sorted(s.labels.items())): s.value for fam in text_string_to_metric_families(metrics)
            for s in fam.samples if s.name == "streamrisk_credit_expected_loss"}
    assert loss[(("pd_band", "0.03-0.08"), ("segment", "user"))] >= round(0.6 * pd * 900, 2) - 0.01
    merchant_loss = round(0.6 * logistic(-5.0) * 400, 2)
    assert loss[(("pd_band", "0-0.01"), ("segment", "merchant"))] >= merchant_loss - 0.01
