"""Internal topics and deployments on the broker: a hostile record written to the merchant-events topic
is dead-lettered and the merchant's state survives it; two deployments with different prefixes and the
same (default) app id each decide only their own payments, with state of their own."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from streamrisk.core.topic_names import changelog_topic, merchant_events_topic
from streamrisk.features.entities import M_PAYMENT
from streamrisk.settings import DAY_MS, Settings
from tests.harness import Client, WorkerProcess, end_offsets, get_json, now_ms, payment, unique, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def test_a_far_future_merchant_event_is_dead_lettered_and_the_merchant_state_survives(
    bootstrap: str, prefix: str, worker: WorkerProcess
) -> None:
    settings = Settings(topic_prefix=prefix, app_id=worker.env["STREAMRISK_APP_ID"])
    internal = merchant_events_topic(settings)
    merchant = "m-internal"
    async with Client(bootstrap, prefix) as client, aiohttp.ClientSession() as http:
        await client.send("payments", "u-int-1", payment("int-p1", "u-int-1", merchant))

        async def merchant_payments(n: int) -> object:
            body = await get_json(http, worker, f"/merchants/{merchant}")
            return (body is not None and body["features"]["payment_count_30d"] == n) or body

        await wait_for(lambda: merchant_payments(1), 60, "the merchant's first payment counted")
        # Written straight to the internal topic, keyed (so partitioned) as a worker would: a year
        # ahead, it would move the partition's clock past every retention, and the sweep would delete
        # the merchant's state; the malformed one would have made processing raise.
        raw = Client(bootstrap, "")
        async with raw:
            await raw.send(internal, merchant, [f"pevil-{unique('x')}", M_PAYMENT, now_ms() + 365 * DAY_MS,
                                                1000, merchant])
            await raw.send(internal, merchant, b"[1, 2")
        letters = await client.read(
            "dead-letters", until=lambda rs: sum(r["source_topic"] == internal for r in rs) >= 2
        )
        ours = sorted((r for r in letters if r["source_topic"] == internal), key=lambda r: r["offset"])
        assert "ms in the future, more than the allowed skew" in ours[0]["error"], ours
        assert "not valid JSON" in ours[1]["error"], ours
        assert all(r["error"].startswith("internal merchant-events record at partition") for r in ours)
        # Later events at the merchant (on the same partition, after the hostile ones) find its state.
        for i in (2, 3):
            await client.send("payments", f"u-int-{i}", payment(f"int-p{i}", f"u-int-{i}", merchant))
        await wait_for(lambda: merchant_payments(3), 60, "the merchant's state kept and counting on")
        stats = await get_json(http, worker, "/stats")
        assert stats is not None and stats["internal_rejected"] == 2 and stats["failed_records"] == 0
        user = await get_json(http, worker, "/users/u-int-1")
        assert user is not None and user["features"]["payment_count_30d"] == 1


async def test_two_deployments_with_other_prefixes_and_the_default_app_id_share_nothing(
    bootstrap: str, tmp_path: Path
) -> None:
    prefixes = [unique("dep-a") + ".", unique("dep-b") + "."]
    # The default app id for both: before the prefix named the group, they formed one group.
    workers = [WorkerProcess(bootstrap, p, "streamrisk", tmp_path / p.rstrip("."), STREAMRISK_PARTITIONS="2")
               for p in prefixes]
    users = {p: [f"{p}u{i}" for i in range(6)] for p in prefixes}
    try:
        for w in workers:
            w.start()
        async with aiohttp.ClientSession() as http:
            async def both_own_every_partition() -> object:
                stats = [await get_json(http, w, "/stats") for w in workers]
                parts = [s and s["ready"] and s["assigned_partitions"] for s in stats]
                return parts == [[0, 1], [0, 1]] or parts

            # Alone in its group, each worker owns both partitions (one shared group would split them).
            await wait_for(both_own_every_partition, 90, "each worker alone in its own group")
            for p in prefixes:
                async with Client(bootstrap, p) as client:
                    for u in users[p]:
                        # One merchant id in both deployments: its state must not mix either.
                        await client.send("payments", u, payment(f"{u}-pay", u, "m-both"))
            for p, w in zip(prefixes, workers, strict=True):
                async with Client(bootstrap, p) as client:
                    decisions = await client.read(
                        "risk-decisions", until=lambda rs, p=p: len(rs) >= len(users[p]), settle=1.5
                    )
                assert sorted(d["user_id"] for d in decisions) == sorted(users[p])

                async def merchant_counted(w: WorkerProcess = w) -> object:
                    body = await get_json(http, w, "/merchants/m-both")
                    return (body is not None and body["features"]["payment_count_30d"] == 6) or body

                await wait_for(merchant_counted, 60, f"{p}: the merchant's own six payments")
                other = prefixes[1 - prefixes.index(p)]
                assert await get_json(http, w, f"/users/{users[other][0]}") is None  # 404: not its user
                mine = await get_json(http, w, f"/users/{users[p][0]}")
                assert mine is not None and mine["features"]["payment_count_30d"] == 1
                stats = await get_json(http, w, "/stats")
                assert stats is not None and all(t.startswith(p) for t in stats["consumed"]), stats
        # Each deployment's state went to a changelog of its own.
        names = [changelog_topic(Settings(topic_prefix=p)) for p in prefixes]
        assert names == [f"{p}streamrisk-state-changelog" for p in prefixes]
        ends = await end_offsets(bootstrap, names)
        for name in names:
            assert sum(end for tp, end in ends.items() if tp.topic == name) > 0, (name, ends)
    except BaseException:
        for w in workers:
            print(f"worker {w.env['STREAMRISK_TOPIC_PREFIX']}:\n{w.log()}")
        raise
    finally:
        for w in workers:
            w.stop()

