"""The loop of docs/training.md on the embedded broker: labelled traffic replayed into the topics,
recorded, trained on offline (`streamrisk train`), the learned ruleset published as a shadow, compared,
then made live, with the worker deciding by the learned score."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from streamrisk.loadgen.scenarios import ScenarioTraffic, parse_mix
from streamrisk.loadgen.synthetic import Record
from streamrisk.rules import load_ruleset
from tests.harness import Client, WorkerProcess, get_json, now_ms, payment, unique, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

N = 5000


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamrisk", *args], capture_output=True, text=True,
                          timeout=120)


def traffic(path: Path, end_ms: int) -> None:
    """30 days of the scenario traffic, more fraud than the default mix, as a replay file."""
    mix = parse_mix("velocity_burst=0.003,card_testing=0.003,account_takeover=0.003,bust_out=0.001")
    t = ScenarioTraffic(300, 30, end_ms=end_ms, days=30, mix=mix, seed=5, run_id=unique("t"))
    sent = [t.next(i / N) for i in range(N)]
    path.write_bytes(b"".join(orjson.dumps({"topic": r.topic, "key": r.key, "value": r.value}) + b"\n"
                              for r in sent if isinstance(r, Record)))


async def test_a_ruleset_trained_on_a_recording_runs_in_shadow_then_live(
    bootstrap: str, tmp_path: Path
) -> None:
    prefix, app_id = unique("train") + ".", unique("app")
    common = ["--bootstrap", bootstrap, "--topic-prefix", prefix]
    worker = WorkerProcess(bootstrap, prefix, app_id, tmp_path / "w").start()
    try:
        async with Client(bootstrap, prefix) as client, aiohttp.ClientSession() as http:
            async def serving() -> bool:
                return await get_json(http, worker, "/health") is not None

            await wait_for(serving, 60, "the worker serving HTTP")
            traffic(tmp_path / "traffic.jsonl", now_ms() - 60_000)
            sent = cli("replay", str(tmp_path / "traffic.jsonl"), "--max", *common)
            assert sent.returncode == 0, sent.stderr
            rec, learned = tmp_path / "day.jsonl", tmp_path / "learned.yaml"
            recorded = cli("record", "--out", str(rec), *common)
            assert recorded.returncode == 0, recorded.stderr

            trained = cli("train", str(rec), "--out", str(learned), "--plot", str(tmp_path / "cal.png"))
            assert trained.returncode == 0, trained.stderr
            ruleset = load_ruleset(learned)
            version = ruleset.version
            assert version.startswith("learned-") and f"wrote ruleset '{version}'" in trained.stdout
            assert ruleset.score_model.decline_at is not None

            shadow = cli("publish-rules", str(learned), "--mode", "shadow", *common)
            assert shadow.returncode == 0, shadow.stderr

            async def in_shadow() -> bool | dict | None:
                s = await get_json(http, worker, "/stats")
                return (s is not None and s["shadow_rules_version"] == version) or s

            await wait_for(in_shadow, 60, f"{version} in shadow")
            # A new account's burst from a new device: what the learned score has seen in the traffic.
            user = unique("burst")
            t0 = now_ms() - 20_000
            for i in range(8):
                await client.send("payments", user, payment(
                    f"{user}-{i}", user, amount=40.0, ts=t0 + i * 2000, device_id=f"{user}-d"))
            would_be = await client.read(f"{app_id}-shadow-decisions",
                                         until=lambda rs: sum(r["user_id"] == user for r in rs) >= 8)
            mine = sorted((r for r in would_be if r["user_id"] == user), key=lambda r: r["ts"])
            assert {r["rules_version"] for r in mine} == {version}
            assert {r["live_rules_version"] for r in mine} == {"default-2026-11-28.1"}
            live = {d["event_id"]: d for d in await client.read(
                "risk-decisions", until=lambda rs: sum(d["user_id"] == user for d in rs) >= 8)}
            # The learned score rates the burst's later payments higher than the hand-set one does.
            assert mine[-1]["score"] > live[mine[-1]["event_id"]]["score"]
            assert mine[-1]["score"] >= ruleset.score_model.review_at

            report = cli("shadow-report", "--app-id", app_id, *common)
            assert report.returncode == 0, report.stderr
            assert f"shadow: ruleset {version}" in report.stdout

            promoted = cli("publish-rules", str(learned), "--retire-shadow", *common)
            assert promoted.returncode == 0, promoted.stderr

            async def is_live() -> bool | dict | None:
                s = await get_json(http, worker, "/stats")
                return (s is not None and s["rules_version"] == version and s["shadow_rules_version"] is None
                        ) or s

            await wait_for(is_live, 60, f"{version} live")
            other = unique("u")
            await client.send("payments", other, payment(f"{other}-1", other))
            decided = await client.read(
                "risk-decisions", until=lambda rs: any(d["user_id"] == other for d in rs))
            assert next(d for d in decided if d["user_id"] == other)["rules_version"] == version
    finally:
        worker.stop()
