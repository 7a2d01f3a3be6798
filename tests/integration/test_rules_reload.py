"""Rules hot-reload across two workers: a ruleset published on `risk-rules` decides every worker's
next payments; an invalid one is dead-lettered and counted while the previous one stays in force."""

from __future__ import annotations

import subprocess
import sys

import aiohttp
import orjson
import pytest

from tests.harness import Client, WorkerProcess, get_json, payment, unique, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

RULESET_V2 = {
    "version": "reload-v2",
    "rules": [{"name": "big_amount", "when": "payment.amount > 100.0", "action": "decline",
               "severity": "medium", "reason": "BIG_AMOUNT"}],
}


async def test_ruleset_reloads_on_both_workers_and_a_broken_one_is_rejected(
    bootstrap: str, tmp_path
) -> None:
    prefix, app_id = unique("reload") + ".", unique("app")
    workers = [WorkerProcess(bootstrap, prefix, app_id, tmp_path / n).start() for n in ("a", "b")]
    try:
        async with Client(bootstrap, prefix) as client, aiohttp.ClientSession() as http:

            async def stats() -> list[dict | None]:
                return [await get_json(http, w, "/stats") for w in workers]

            async def split() -> bool | list:
                s = await stats()
                owned = [set(x["assigned_partitions"]) if x else set() for x in s]
                return (all(owned) and owned[0] | owned[1] == {0, 1, 2, 3}) or owned

            await wait_for(split, 90, "both workers own partitions")

            async def version_is(v: str, rejected: int = 0) -> bool | list:
                s = await stats()
                ok = all(x and x["rules_version"] == v and x["rulesets_rejected"] == rejected for x in s)
                return ok or [(x or {}).get("rules_version") for x in s]

            default_version = (await stats())[0]["rules_version"]
            await client.send("risk-rules", "main", RULESET_V2)
            await wait_for(lambda: version_is("reload-v2"), 30, "both workers on reload-v2")

            users = [unique("u") for _ in range(16)]
            for u in users:
                await client.send("payments", u, payment(f"{u}-1", u, amount=150.0))
            decisions = await client.read(
                "risk-decisions", until=lambda rs: {d["user_id"] for d in rs} >= set(users)
            )
            assert {(d["rules_version"], d["action"], tuple(d["reasons"])) for d in decisions} == {
                ("reload-v2", "decline", ("BIG_AMOUNT",))
            }
            # Both workers decided some of them (each owns half the partitions).
            per_worker = [sum(x["decisions"].values()) for x in await stats()]
            assert all(n > 0 for n in per_worker), per_worker

            broken = {**RULESET_V2, "version": "reload-v3"}
            broken["rules"] = [{**RULESET_V2["rules"][0], "when": "payment.amount >"}]
            await client.send("risk-rules", "main", broken)
            await wait_for(lambda: version_is("reload-v2", rejected=1), 30, "v3 rejected on both")
            letters = await client.read(
                "dead-letters", until=lambda rs: any(r["source_topic"].endswith("risk-rules") for r in rs)
            )
            letter = next(r for r in letters if r["source_topic"].endswith("risk-rules"))
            assert "big_amount" in letter["error"]
            assert orjson.loads(letter["value"])["version"] == "reload-v3"

            for u in users:
                await client.send("payments", u, payment(f"{u}-2", u, amount=150.0))
            decisions = await client.read(
                "risk-decisions", until=lambda rs: sum(d["event_id"].endswith("-2") for d in rs) >= 16
            )
            assert {d["rules_version"] for d in decisions if d["event_id"].endswith("-2")} == {"reload-v2"}
            assert default_version != "reload-v2"
    finally:
        for w in workers:
            w.stop()


async def test_worker_started_later_decides_with_the_published_ruleset_from_its_first_payment(
    bootstrap: str, tmp_path
) -> None:
    prefix = unique("late-start") + "."
    rules_file = tmp_path / "rules.json"
    rules_file.write_bytes(orjson.dumps(RULESET_V2))
    published = subprocess.run(
        [sys.executable, "-m", "streamrisk", "publish-rules", str(rules_file),
         "--bootstrap", bootstrap, "--topic-prefix", prefix],
        capture_output=True, text=True, timeout=60,
    )
    assert published.returncode == 0, published.stderr
    async with Client(bootstrap, prefix) as client:
        await client.send("risk-rules", "main", b"{broken")  # rejected; v2 stays
        await client.send("payments", "early", payment("early-1", "early", amount=150.0))
        worker = WorkerProcess(bootstrap, prefix, unique("app"), tmp_path / "w").start()
        try:
            decisions = await client.read("risk-decisions", until=lambda rs: len(rs) >= 1)
            assert [(d["event_id"], d["rules_version"]) for d in decisions] == [("early-1", "reload-v2")]
            async with aiohttp.ClientSession() as http:
                s = await get_json(http, worker, "/stats")
            assert s is not None and s["rulesets_rejected"] == 1
            # A record already there at start is not reported again (the workers running when it
            # was published did); it is counted.
            assert s["dead_letters"] == 0
        finally:
            worker.stop()
