"""Window state survives a SIGKILL and moves with its partitions to a second worker.

    reference worker (own app id) ──── sees every event, never stops
    worker A ── batch 1 ── SIGKILL ── worker A' (same app id) ── batch 2 ── worker B joins
    then: every user's and merchant's features, read from whichever worker owns it,
          equal the reference's.
"""

from __future__ import annotations

import aiohttp
import pytest

from streamrisk.loadgen.synthetic import Traffic
from tests.harness import Client, WorkerProcess, features, now_ms, payment, unique, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


SENT: list = []


async def send_batch(client: Client, traffic: Traffic, n: int, t0: int) -> int:
    """n events spread over the last hour of event time; returns the number of payments."""
    payments = 0
    for i in range(n):
        rec = traffic.next(t0 - 3_600_000 + i * (3_600_000 // n))
        payments += rec.topic == "payments"
        SENT.append(rec)
        await client.send(rec.topic, rec.key, rec.value)
    return payments


def local_features(kind: str, entity: str) -> dict | None:
    """What a worker that saw every record exactly once computes, without Kafka."""
    import orjson

    from streamrisk.core.processor import Processor
    from streamrisk.core.records import Message
    from streamrisk.settings import Settings
    from streamrisk.state.kv import DictKV

    proc = Processor(Settings(), DictKV())
    msgs = [Message(r.topic, 0, i, r.key.encode(), orjson.dumps(r.value)) for i, r in enumerate(SENT)]
    proc.run_local(msgs, now_ms=now_ms())
    store = proc.users if kind == "users" else proc.merchants
    e = store.get(entity)
    return e.features() if e else None


async def test_features_survive_sigkill_and_rebalance(bootstrap: str, tmp_path) -> None:
    prefix = unique("rec") + "."
    app_id = unique("app")
    traffic = Traffic(users=12, merchants=4, seed=11, run_id=prefix)
    ref = WorkerProcess(bootstrap, prefix, unique("ref"), tmp_path / "ref").start()
    a = WorkerProcess(bootstrap, prefix, app_id, tmp_path / "a").start()
    workers = [a]
    try:
        async with Client(bootstrap, prefix) as client, aiohttp.ClientSession() as http:
            t0 = now_ms()
            n_pay = await send_batch(client, traffic, 300, t0)
            # A payment indexed by A before it dies, charged back after: A' must find it.
            victim = unique("victim")
            await client.send("payments", victim, payment(f"{victim}-p", victim, "rec-shop", 40.0))

            async def ref_has(n: int) -> bool | int:
                got = 0
                for u in traffic.users:
                    f = await features(http, [ref], f"/users/{u}")
                    got += int(f["payment_count_24h"]) if f else 0
                return got >= n or got

            await wait_for(lambda: ref_has(n_pay), 60, "reference saw batch 1")
            # Let worker A catch up too (it may commit, or not: either way nothing may double).
            seen_by_a = [*traffic.users, victim]
            await wait_for(lambda: _all_present(http, [a], seen_by_a), 60, "worker A saw batch 1")
            a.kill()

            a2 = WorkerProcess(bootstrap, prefix, app_id, tmp_path / "a2").start()
            workers = [a2]
            n_pay += await send_batch(client, traffic, 200, now_ms())
            await wait_for(lambda: ref_has(n_pay), 60, "reference saw batch 2")
            await wait_for(lambda: _same(http, workers, ref, traffic), 90, "A' equals the reference")
            await client.send("chargebacks", victim, {
                "event_id": f"{victim}-cb", "ts": now_ms(), "payment_id": f"{victim}-p", "user_id": victim,
                "merchant_id": "rec-shop", "amount": 40.0, "currency": "CNY", "reason": "fraud",
            })
            # One alert from the reference and one from A' (same id); both matched the payment.
            alerts = await client.read(
                "fraud-alerts", until=lambda rs: sum(a["subject_id"] == victim for a in rs) >= 2, settle=1.0
            )
            assert [a["reasons"] for a in alerts if a["subject_id"] == victim] == [["CHARGEBACK"]] * 2

            b = WorkerProcess(bootstrap, prefix, app_id, tmp_path / "b").start()
            workers = [a2, b]
            # B takes some partitions; then the state must be served, correct, by both.
            await wait_for(lambda: _split(http, workers, traffic.users), 90, "partitions split")
            await wait_for(lambda: _same(http, workers, ref, traffic), 60, "A'+B equal the reference")
    finally:
        for w in (ref, *workers):
            w.stop()


async def _all_present(http: aiohttp.ClientSession, workers: list[WorkerProcess], users: list[str]) -> bool:
    for u in users:
        if await features(http, workers, f"/users/{u}") is None:
            return False
    return True


async def _split(http: aiohttp.ClientSession, workers: list[WorkerProcess], users: list[str]) -> bool | dict:
    owners: dict[int, int] = {}
    for u in users:
        for i, w in enumerate(workers):
            if await features(http, [w], f"/users/{u}") is not None:
                owners[i] = owners.get(i, 0) + 1
    return len(owners) == len(workers) or owners


async def _same(http: aiohttp.ClientSession, workers: list[WorkerProcess], ref: WorkerProcess,
                traffic: Traffic) -> bool | str:
    for kind, ids in (("users", traffic.users), ("merchants", traffic.merchants)):
        for i in ids:
            want = await features(http, [ref], f"/{kind}/{i}")
            got = await features(http, workers, f"/{kind}/{i}")
            if want != got:
                if want is None or got is None:
                    return f"{kind}/{i}: ref={want} got={got}"
                local = local_features(kind, i) or {}
                diff = {k: (v, got.get(k), local.get(k)) for k, v in want.items() if got.get(k) != v}
                return f"{kind}/{i}: (ref, got, local) differ at {diff}"
    return True
