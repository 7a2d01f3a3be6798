"""Shadow rulesets on a running worker: published with `publish-rules --mode shadow`, evaluated on live
traffic without acting, counted in /stats, reported by `streamrisk shadow-report` once chargebacks
arrive; then the live traffic recorded with `streamrisk record` and backtested offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from streamrisk.backtest.offline import run_backtest
from streamrisk.recording.jsonl import read_recording
from streamrisk.rules import load_ruleset
from streamrisk.settings import Settings
from tests.harness import Client, WorkerProcess, get_json, payment, unique, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

LIVE = {"version": "live-1", "rules": []}
CANDIDATE = {"version": "cand-1", "rules": [
    {"name": "big_amount", "when": "payment.amount >= 500.0", "action": "decline",
     "severity": "high", "reason": "BIG_AMOUNT"}]}


async def health(http: aiohttp.ClientSession, worker: WorkerProcess) -> bool:
    return await get_json(http, worker, "/health") is not None


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamrisk", *args], capture_output=True, text=True,
                          timeout=60)


async def test_shadow_ruleset_never_acts_is_counted_reported_and_backtested(
    bootstrap: str, tmp_path: Path
) -> None:
    prefix, app_id = unique("shadow") + ".", unique("app")
    common = ["--bootstrap", bootstrap, "--topic-prefix", prefix]
    rules = tmp_path / "cand.json"
    rules.write_bytes(orjson.dumps(CANDIDATE))
    worker = WorkerProcess(bootstrap, prefix, app_id, tmp_path / "w").start()
    try:
        async with Client(bootstrap, prefix) as client, aiohttp.ClientSession() as http:
            # The worker creates its topics (risk-rules with one partition) before it serves HTTP; a
            # plain producer sending first would have the broker create risk-rules with its default.
            await wait_for(lambda: health(http, worker), 60, "the worker serving HTTP")
            await client.send("risk-rules", "main", LIVE)
            published = cli("publish-rules", str(rules), "--mode", "shadow", *common)
            assert published.returncode == 0, published.stderr
            assert "in shadow" in published.stdout

            async def versions() -> bool | dict | None:
                s = await get_json(http, worker, "/stats")
                return (s is not None and s["rules_version"] == "live-1"
                        and s["shadow_rules_version"] == "cand-1") or s

            await wait_for(versions, 60, "live-1 in force and cand-1 in shadow")
            users = [unique("u") for _ in range(6)]
            for i, u in enumerate(users):  # half of them pay big
                await client.send("payments", u, payment(f"{u}-1", u, amount=900.0 if i % 2 else 20.0))
            decisions = await client.read(
                "risk-decisions", until=lambda rs: {d["user_id"] for d in rs} >= set(users))
            assert {(d["action"], d["rules_version"]) for d in decisions} == {("approve", "live-1")}
            would_be = await client.read(f"{app_id}-shadow-decisions", until=lambda rs: len(rs) >= 6)
            assert sorted((r["action"], r["live_action"]) for r in would_be) == (
                [("approve", "approve")] * 3 + [("decline", "approve")] * 3)
            s = await get_json(http, worker, "/stats")
            assert s is not None and s["shadow"]["decisions"] == 6 and s["shadow"]["same_action"] == 3
            assert s["shadow"]["actions"] == {"approve->approve": 3, "approve->decline": 3}
            assert s["alerts"] == {}  # the shadow's declines raised nothing

            # Two weeks later the chargeback comes for one big payment.
            big = users[1]
            await client.send("chargebacks", big, {
                "event_id": f"{big}-cb", "ts": decisions[0]["ts"] + 1000, "payment_id": f"{big}-1",
                "user_id": big, "merchant_id": "m1", "amount": 900.0, "currency": "CNY",
                "reason": "fraud"})
            await client.read("fraud-alerts", until=lambda rs: any(a["subject_id"] == big for a in rs))

        report = cli("shadow-report", "--app-id", app_id, *common)
        assert report.returncode == 0, report.stderr
        out = report.stdout
        assert "payments whose action changed: 3 of 6" in out, out
        assert "approve -> decline: 3" in out
        # The live ruleset flagged nothing; the shadow's declines caught the one charged-back payment.
        precision = next(line for line in out.splitlines() if "precision (decline)" in line).split()
        assert precision[-2:] == ["-", "0.333"], out  # live flagged nothing: no precision
        recall = next(line for line in out.splitlines() if "recall (decline)" in line).split()
        assert recall[-3:] == ["0.000", "1.000", "+1.000"], out

        promoted = cli("publish-rules", str(rules), "--retire-shadow", *common)
        assert promoted.returncode == 0, promoted.stderr
        async with aiohttp.ClientSession() as http:

            async def promoted_for_good() -> bool | dict | None:
                s = await get_json(http, worker, "/stats")
                return (s is not None and s["rules_version"] == "cand-1"
                        and s["shadow_rules_version"] is None) or s

            await wait_for(promoted_for_good, 30, "cand-1 live and no shadow")

        recording = tmp_path / "live.jsonl"
        recorded = cli("record", "--out", str(recording), *common)
        assert recorded.returncode == 0, recorded.stderr
        assert "payments=6" in recorded.stdout and "risk-rules=4" in recorded.stdout
        result = run_backtest(read_recording(recording), Settings(), load_ruleset(LIVE),
                              load_ruleset(CANDIDATE))
        c = result.comparison
        assert (c.compared, c.changed, c.charged_back) == (6, 3, {f"{big}-1"})
        assert c.quality(c.b)["decline"].recall == 1.0
    finally:
        worker.stop()
