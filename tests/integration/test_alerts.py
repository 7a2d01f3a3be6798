"""Each fraud pattern, produced to a running worker, raises its alert on `fraud-alerts` (once), and a
normal stream raises none; a chargeback 5 days after its payment finds it."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import orjson
import pytest

from streamrisk.loadgen import patterns
from tests.harness import Client, WorkerProcess, features, now_ms, unique

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PATTERNS: dict[str, tuple[str, Callable[[str, int], list[patterns.Record]]]] = {
    "VELOCITY_5M": ("user", patterns.velocity_burst),
    "CARD_TESTING": ("user", patterns.card_testing),
    "NEW_DEVICE_HIGH_AMOUNT": ("user", patterns.new_device_high_amount),
    "CHARGEBACK": ("user", patterns.chargeback_days_late),
    "UNMATCHED_CHARGEBACK": ("user", patterns.unmatched_chargeback),
    "MERCHANT_REFUND_SPIKE": ("merchant", patterns.refund_spike),
    "MERCHANT_BUST_OUT": ("merchant", patterns.bust_out),
}


async def send_all(client: Client, records: list[patterns.Record]) -> None:
    for topic, key, value in records:
        await client.send(topic, key, value)


@pytest.mark.parametrize("reason", sorted(PATTERNS))
async def test_pattern_raises_its_alert_once(client: Client, reason: str) -> None:
    subject_type, make = PATTERNS[reason]
    subject = unique(reason.lower())
    await send_all(client, make(subject, now_ms()))

    def mine(alerts: list[dict]) -> list[dict]:
        return [a for a in alerts if a["subject_id"] == subject and reason in a["reasons"]]

    alerts = await client.read("fraud-alerts", until=lambda rs: bool(mine(rs)), settle=1.5)
    [alert] = mine(alerts)
    assert alert["subject_type"] == subject_type
    assert alert["event_ids"]
    assert alert["severity"] in ("low", "medium", "high")


async def test_normal_stream_raises_no_alert(client: Client) -> None:
    tag = unique("calm")
    now = now_ms()
    users = [f"{tag}-u{i}" for i in range(4)]
    merchants = [f"{tag}-m{i}" for i in range(2)]
    records = [r for u in users for r in patterns.normal_user(u, now)]
    records += [r for m in merchants for r in patterns.normal_merchant(m, now)]
    records.sort(key=lambda r: r[2]["ts"])
    await send_all(client, records)
    n_payments = sum(1 for t, _, _ in records if t == "payments")

    def ours(rs: list[dict]) -> list[dict]:
        return [r for r in rs if r.get("user_id", r.get("subject_id", "")).startswith(tag)]

    decisions = await client.read("risk-decisions", until=lambda rs: len(ours(rs)) >= n_payments)
    assert {d["action"] for d in ours(decisions)} == {"approve"}
    alerts = await client.read("fraud-alerts", until=lambda rs: True, settle=2.0)
    assert [a for a in alerts if a["subject_id"].startswith(tag)] == []


async def test_chargeback_five_days_after_its_payment(client: Client, worker: WorkerProcess) -> None:
    user = unique("late")
    now = now_ms()
    pay, cb = patterns.chargeback_days_late(user, now, days=5)
    assert cb[2]["ts"] - pay[2]["ts"] == 5 * patterns.DAY
    # Payments and chargebacks are different topics, read independently: like in production,
    # the chargeback comes after its payment was decided.
    await send_all(client, [pay])
    await client.read("risk-decisions", until=lambda rs: any(d["user_id"] == user for d in rs))
    await send_all(client, [cb])
    alerts = await client.read(
        "fraud-alerts", until=lambda rs: any(a["subject_id"] == user for a in rs), settle=1.0
    )
    mine = [a for a in alerts if a["subject_id"] == user]
    assert len(mine) == 1, orjson.dumps(mine).decode()
    alert = mine[0]
    assert alert["reasons"] == ["CHARGEBACK"]  # matched: not UNMATCHED_CHARGEBACK
    assert alert["event_ids"] == [cb[2]["event_id"], pay[2]["event_id"]]
    assert alert["ts"] == cb[2]["ts"]
    async with aiohttp.ClientSession() as http:
        user_features = await features(http, [worker], f"/users/{user}")
        merchant = cb[2]["merchant_id"]
        merchant_features = await features(http, [worker], f"/merchants/{merchant}")
    assert user_features is not None and user_features["chargeback_count_30d"] == 1
    assert merchant_features is not None and merchant_features["chargeback_count_30d"] == 1
