"""State on local disk (RocksDB, runtime/faust/rocks.py) across SIGKILLs and clean restarts, on the
real brokers, the worker restarted on the SAME data dir each time:

    backlog of credit_line payments (and producer retries)
        ── worker ── SIGKILL ── worker drains it ── SIGTERM ── worker
    after the kill the partitions it wrote are wiped and restored from the changelog (they may hold
    writes the changelog never committed); after the clean stop they are reused and only the changelog
    written since is read (none: the restarted worker restores 0 records). Then, for every user:
    credit_outstanding == the approved or reviewed payments by the FIRST decision of each, and every
    feature == the brute-force oracle over what was sent.
"""

from __future__ import annotations

import random
import time

import aiohttp
import pytest

from streamrisk.loadgen.synthetic import Record
from tests.feature_oracle import FeatureOracle
from tests.harness import Client, WorkerProcess, get_json, now_ms, unique, wait_for
from tests.integration.test_replay_credit import (
    first_decisions,
    run_with_kills,
    send_all,
    wait_balances_and_features,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

USERS = 16
PAYMENTS = 600
KILLS = 1
PARTITIONS = 4
ENV = {"STREAMRISK_STORE": "rocksdb", "STREAMRISK_PARTITIONS": str(PARTITIONS),
       "STREAMRISK_COMMIT_INTERVAL_MS": "1500", "STREAMRISK_BATCH_MAX": "40"}


def backlog(tag: str, t0: int) -> list[Record]:
    rng = random.Random(11)
    out = []
    for i in range(PAYMENTS):
        user = f"{tag}-u{i % USERS}"
        value = {"event_id": f"{tag}-p{i}", "ts": t0 + i * 1_000, "user_id": user,
                 "merchant_id": f"{tag}-m{rng.randrange(4)}", "amount": float(rng.choice([5, 20, 60, 150])),
                 "currency": "CNY", "method": "credit_line", "device_id": f"d{rng.randrange(3)}"}
        out.append(Record("payments", user, value))
        if i % 10 == 9:  # a producer's retry of an earlier payment: no second effect
            out.append(out[rng.randrange(len(out))])
    return out


async def store_stats(http: aiohttp.ClientSession, w: WorkerProcess) -> dict:
    async def ready() -> bool | None:
        body = await get_json(http, w, "/ready")
        return body is not None or None
    await wait_for(ready, 60, "the worker is ready")
    body = await get_json(http, w, "/stats")
    assert body is not None
    return body["state_store"]


async def test_state_on_disk_after_sigkills_equals_brute_force_and_a_clean_restart_reads_no_changelog(
    bootstrap: str, tmp_path
) -> None:
    tag = unique("disk")
    prefix, app_id = tag + ".", unique("app")
    started = time.monotonic()

    def worker() -> WorkerProcess:  # always the same data dir: what the last one left is reused or wiped
        return WorkerProcess(bootstrap, prefix, app_id, tmp_path / "w", **ENV).start()

    payments = backlog(tag, now_ms() - 3 * 3_600_000)
    w = worker()
    try:
        async with Client(bootstrap, prefix) as client, aiohttp.ClientSession() as http:
            await send_all(client, payments)

            def restart() -> WorkerProcess:
                return worker()

            w = await run_with_kills(http, w, restart, KILLS, PAYMENTS // (KILLS + 2))
            # The last worker was started on the data dir of a killed one: it wiped what that one wrote.
            after_kill = await store_stats(http, w)
            assert after_kill["partitions_wiped"] >= 1 and after_kill["restored_records"] > 0, after_kill
            first = await first_decisions(client, {r.value["event_id"] for r in payments})

            owed: dict[str, int] = {}
            for r in {r.value["event_id"]: r for r in payments}.values():
                if first[r.value["event_id"]] in ("approve", "review"):
                    owed[r.key] = owed.get(r.key, 0) + round(r.value["amount"] * 100)
            oracle = FeatureOracle()
            oracle.add_all(payments)

            await wait_balances_and_features(http, w, oracle, owed)

            # A clean stop marks every partition clean at the offset its changelog reached: the next
            # worker reuses them all and reads nothing of the changelog, and answers the same.
            w.stop()
            w = worker()
            clean = await store_stats(http, w)
            assert clean["partitions_wiped"] == 0 and clean["partitions_reused"] == PARTITIONS, clean
            assert clean["restored_records"] == 0, clean
            await wait_balances_and_features(http, w, oracle, owed)  # after a clean restart
    finally:
        w.stop()
    assert time.monotonic() - started < 100
