"""`streamrisk record` and `streamrisk replay` on the broker: a recording replayed into other topics
and recorded again holds the same records (keys, values, malformed ones too) in the same order."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from streamrisk.recording.jsonl import parse_line, read_recording
from tests.harness import Client, now_ms, payment, unique, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamrisk", *args], capture_output=True, text=True,
                          timeout=60)


async def test_a_replayed_recording_records_the_same_and_is_paced_by_event_time(
    bootstrap: str, tmp_path: Path
) -> None:
    src, dst = unique("rec") + ".", unique("rep") + "."
    t0 = now_ms() - 60_000
    async with Client(bootstrap, src) as client:
        # 2 s of event time for one user (one partition: a total order to compare), one malformed.
        for i in range(5):
            await client.send("payments", "u1", payment(f"p{i}", "u1", ts=t0 + i * 500))
        await client.send("payments", "u1", b"{not json")
        await client.send("chargebacks", "u1", {"event_id": "c1", "ts": t0 + 2000, "payment_id": "p0",
                                                "user_id": "u1", "merchant_id": "m1", "amount": 25.0,
                                                "currency": "CNY", "reason": "fraud"})
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    done = cli("record", "payments", "chargebacks", "--out", str(first),
               "--bootstrap", bootstrap, "--topic-prefix", src)
    assert done.returncode == 0, done.stderr
    assert "recorded 7 records" in done.stdout and "payments=6" in done.stdout

    replayed = cli("replay", str(first), "--speed", "4", "--bootstrap", bootstrap, "--topic-prefix", dst)
    assert replayed.returncode == 0, replayed.stderr
    assert "sent 7 records" in replayed.stdout
    elapsed = float(replayed.stdout.split(" in ")[1].split(" s")[0])
    assert elapsed >= 2.0 / 4 - 0.05, replayed.stdout  # 2 s of event time at 4x: paced

    done = cli("record", "payments", "chargebacks", "--out", str(second),
               "--bootstrap", bootstrap, "--topic-prefix", dst)
    assert done.returncode == 0, done.stderr

    def content(path: Path) -> list[tuple]:
        return [(r.topic, r.key, r.value) for r in read_recording(path)]

    a, b = content(first), content(second)
    assert sorted(a, key=repr) == sorted(b, key=repr)
    payments = [x for x in a if x[0] == "payments"]
    assert payments == [x for x in b if x[0] == "payments"]  # one partition: the same order
    assert (b"{not json") in [x[2] for x in b]


def test_replay_names_a_bad_line(tmp_path: Path, bootstrap: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"topic": "payments", "key": "u1"}\n')
    done = cli("replay", str(bad), "--bootstrap", bootstrap)
    assert done.returncode == 1 and "bad.jsonl:1" in done.stderr and 'no "value"' in done.stderr


def _ignore_sigint() -> None:
    # What a shell does to a job it starts in the background (`streamrisk record --follow ... &`).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    ("sig", "started"),
    [(signal.SIGINT, "in the foreground"), (signal.SIGINT, "in the background"), (signal.SIGTERM, "")],
    ids=["sigint", "sigint-background-job", "sigterm"],
)
async def test_follow_stops_on_a_signal_to_its_group_with_whole_lines_and_says_what_it_recorded(
    bootstrap: str, tmp_path: Path, sig: signal.Signals, started: str
) -> None:
    prefix, out = unique("follow") + ".", tmp_path / "follow.jsonl"
    t0 = now_ms() - 60_000
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamrisk", "record", "payments", "--follow", "--out", str(out),
         "--bootstrap", bootstrap, "--topic-prefix", prefix],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, process_group=0,
        preexec_fn=_ignore_sigint if started == "in the background" else None,
    )
    sent = 0
    try:
        async with Client(bootstrap, prefix) as client:

            async def traffic() -> None:  # one user, one partition: the recording is a prefix of it
                nonlocal sent
                while True:
                    await client.send("payments", "u1", payment(f"p{sent}", "u1", ts=t0 + sent))
                    sent += 1
                    await asyncio.sleep(0.005)

            producing = asyncio.create_task(traffic())
            try:

                async def recorded_some() -> object:
                    assert proc.poll() is None, proc.communicate()
                    lines = out.read_bytes().count(b"\n") if out.exists() else 0
                    return lines >= 50 or lines

                await wait_for(recorded_some, 60, "records written to the recording")
                os.killpg(proc.pid, sig)  # still producing: the signal lands mid-stream
                signalled = time.monotonic()
                stdout, stderr = await asyncio.to_thread(proc.communicate, timeout=10)
                took = time.monotonic() - signalled
            finally:
                producing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await producing
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    assert proc.returncode == 0, stderr
    assert took < 2.0, f"exited {took:.1f} s after {sig.name}"
    raw = out.read_bytes()
    assert raw.endswith(b"\n"), raw[-200:]
    lines = raw.splitlines()
    records = [parse_line(line, f"{out}:{n}") for n, line in enumerate(lines, 1)]
    ids = [orjson.loads(r.value or b"null")["event_id"] for r in records]
    assert ids == [f"p{i}" for i in range(len(ids))] and 50 <= len(ids) <= sent
    said = re.search(r"recorded (\d+) records to", stdout)
    assert said is not None and int(said.group(1)) == len(ids), stdout
