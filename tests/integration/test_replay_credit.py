"""Credit balances after repeated SIGKILLs: a replay never changes state.

    backlog of credit_line payments (and producer retries)
        ── worker ── SIGKILL ── worker ── SIGKILL ── ... ── worker drains it
    then chargebacks of some approved payments and repayments ── SIGKILL ── worker drains them
    then, for every user: credit_outstanding (GET /users/{id}) == the approved or reviewed credit
    payments by the FIRST decision of each on risk-decisions, less the chargebacked ones, less the
    repayments; and every feature == the brute-force oracle over what was sent.

Chargebacks and repayments are sent once the payments are decided, so the balance does not depend on
how the worker interleaves topics (a chargeback read before its payment reverses nothing, a repayment
never takes the balance below zero); their amounts never exceed what is owed.
"""

from __future__ import annotations

import random
import time

import aiohttp
import orjson
import pytest

from streamrisk.loadgen.synthetic import Record
from tests.feature_oracle import FeatureOracle, compare
from tests.harness import Client, WorkerProcess, get_json, now_ms, unique, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

USERS = 24
PAYMENTS = 2400
KILLS = 4
# Long commit interval and small batches: each kill leaves many batches uncommitted, whose state
# records reached the changelog in part.
WORKER_ENV = {"STREAMRISK_COMMIT_INTERVAL_MS": "1500", "STREAMRISK_BATCH_MAX": "40"}


def backlog(tag: str, t0: int) -> list[Record]:
    rng = random.Random(7)
    out = []
    for i in range(PAYMENTS):
        user = f"{tag}-u{i % USERS}"
        amount = float(rng.choice([5, 20, 60, 150, 400]))
        value = {"event_id": f"{tag}-p{i}", "ts": t0 + i * 1_000, "user_id": user,
                 "merchant_id": f"{tag}-m{rng.randrange(6)}", "amount": amount,
                 "currency": "CNY", "method": "credit_line", "device_id": f"d{rng.randrange(3)}"}
        out.append(Record("payments", user, value))
        if i % 12 == 11:  # a producer's retry of an earlier payment: no second effect
            out.append(out[rng.randrange(len(out))])
    return out


async def send_all(client: Client, records: list[Record]) -> None:
    producer = client.producer
    assert producer is not None
    futs = [await producer.send(client.prefix + r.topic, orjson.dumps(r.value), key=r.key.encode())
            for r in records]
    for f in futs:
        await f


async def run_with_kills(http: aiohttp.ClientSession, start: WorkerProcess, restart, kills: int,
                         every: int) -> WorkerProcess:
    """Kill the worker each time it has processed `every` records since it started; restart it."""
    w = start
    for _ in range(kills):
        async def progressed(w: WorkerProcess = w) -> bool | int:
            body = await get_json(http, w, "/stats")
            n = int(body.get("records", 0)) if body else 0
            # A worker killed well past `every` (it is polled, not stopped on the dot) can leave the next
            # one less than `every` to do: once it has read all there is, it is killed idle.
            caught_up = n > 0 and body is not None and not any(body.get("consumer_lag", {1: 1}).values())
            return n >= every or caught_up or n
        await wait_for(progressed, 60, "the worker works through the backlog")
        w.kill()
        w = restart()
    return w


async def first_decisions(client: Client, want: set[str]) -> dict[str, str]:
    """The first decision on risk-decisions of each payment in `want` (decisions are keyed by user, so a
    user's repeats follow its first decision on one partition)."""
    records = await client.read("risk-decisions", until=lambda rs: want <= {r["event_id"] for r in rs},
                                timeout=90, settle=1.0)
    first: dict[str, str] = {}
    for r in records:
        first.setdefault(r["event_id"], r["action"])
    return first


async def test_credit_balances_and_features_after_repeated_sigkills(bootstrap: str, tmp_path) -> None:
    tag = unique("rpl")
    prefix = tag + "."
    app_id = unique("app")
    started = time.monotonic()
    n = 0

    def worker() -> WorkerProcess:
        nonlocal n
        n += 1
        return WorkerProcess(bootstrap, prefix, app_id, tmp_path / f"w{n}", **WORKER_ENV).start()

    t0 = now_ms() - 3 * 3_600_000
    payments = backlog(tag, t0)
    w = worker()
    try:
        async with Client(bootstrap, prefix) as client, aiohttp.ClientSession() as http:
            await send_all(client, payments)
            w = await run_with_kills(http, w, worker, KILLS, PAYMENTS // (KILLS + 2))
            first = await first_decisions(client, {r.value["event_id"] for r in payments})

            # Chargebacks of some approved payments, and repayments within what is owed.
            owed: dict[str, int] = {}
            approved = []
            for r in {r.value["event_id"]: r for r in payments}.values():
                if first[r.value["event_id"]] in ("approve", "review"):
                    owed[r.key] = owed.get(r.key, 0) + round(r.value["amount"] * 100)
                    approved.append(r)
            later: list[Record] = []
            ts = t0 + PAYMENTS * 1_000
            for i, r in enumerate(approved[::9]):
                v = r.value
                later.append(Record("chargebacks", r.key, {
                    "event_id": f"{tag}-c{i}", "ts": ts + i, "payment_id": v["event_id"], "user_id": r.key,
                    "merchant_id": v["merchant_id"], "amount": v["amount"], "currency": "CNY",
                    "reason": "fraud"}))
                owed[r.key] -= round(v["amount"] * 100)
            for i, user in enumerate(sorted(owed)):
                amount = owed[user] // 300  # a third of it, in three repayments
                for j in range(3 if amount else 0):
                    later.append(Record("repayments", user, {
                        "event_id": f"{tag}-r{i}-{j}", "ts": ts + 1_000 + j, "account_type": "user",
                        "account_id": user, "amount": amount / 100, "currency": "CNY",
                        "due_ts": ts + 2_000}))
                    owed[user] -= amount
            await send_all(client, later)
            w = await run_with_kills(http, w, worker, 1, len(later) // 3)

            oracle = FeatureOracle()
            oracle.add_all(payments + later)

            await wait_balances_and_features(http, w, oracle, owed)
    finally:
        w.stop()
    assert time.monotonic() - started < 120


async def wait_balances_and_features(
    http: aiohttp.ClientSession, w: WorkerProcess, oracle: FeatureOracle, owed: dict[str, int]
) -> None:
    """Wait until every user's credit_outstanding is `owed` (minor units) and its features equal the
    brute force, as the worker `w` answers them."""

    async def balances_and_features() -> bool | str:
        for u in sorted(oracle.user_clock):
            body = await get_json(http, w, f"/users/{u}")
            if body is None:
                return f"{u}: not served yet"
            got = round(body["credit_outstanding"] * 100)
            if got != owed.get(u, 0):
                return f"{u}: credit_outstanding {got} != {owed.get(u, 0)} (first decisions)"
            diff = compare(oracle.user(u), body["features"])
            if diff:
                return f"{u}: features differ {diff}"
        return True

    await wait_for(balances_and_features, 60, "balances and features equal the reference")
