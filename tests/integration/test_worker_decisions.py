"""A worker on the embedded broker: payments in, exactly one contract decision out; bad input to
dead letters; duplicates ignored."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.harness import Client, WorkerProcess, payment

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DECISION_FIELDS = {
    "decision_id", "event_id", "user_id", "merchant_id", "ts", "action", "score", "reasons",
    "rules_version", "decided_at",
}


def for_user(user: str):
    return lambda records: [r for r in records if r["user_id"] == user]


async def test_payment_gets_exactly_one_decision_with_every_contract_field(client: Client) -> None:
    await client.send("payments", "alice", payment("pay-alice-1", "alice", "m-7", 12.5))
    decisions = await client.read(
        "risk-decisions", until=lambda rs: any(r["user_id"] == "alice" for r in rs), settle=1.5
    )
    mine = for_user("alice")(decisions)
    assert len(mine) == 1
    d = mine[0]
    assert d.keys() >= DECISION_FIELDS
    assert d["event_id"] == "pay-alice-1"
    assert d["merchant_id"] == "m-7"
    assert d["action"] == "approve"
    assert d["reasons"] == []
    assert 0.0 <= d["score"] <= 1.0
    assert isinstance(d["decided_at"], int) and d["decided_at"] >= d["ts"]


async def test_burst_over_velocity_threshold_is_declined_with_reason(client: Client) -> None:
    # Default threshold: more than 10 payments in 5 minutes.
    for i in range(12):
        await client.send("payments", "bob", payment(f"pay-bob-{i}", "bob"))
    decisions = await client.read(
        "risk-decisions", until=lambda rs: len(for_user("bob")(rs)) >= 12
    )
    by_event = {d["event_id"]: d for d in for_user("bob")(decisions)}
    assert [by_event[f"pay-bob-{i}"]["action"] for i in range(10)] == ["approve"] * 10
    for i in (10, 11):
        assert by_event[f"pay-bob-{i}"]["action"] == "decline"
        assert "VELOCITY_5M" in by_event[f"pay-bob-{i}"]["reasons"]


async def test_malformed_records_go_to_dead_letters_and_valid_neighbours_are_decided(
    client: Client,
) -> None:
    good = payment("x", "carol")
    bad: dict[str, bytes] = {
        "not JSON": b"{this is not json",
        "missing field": orjson.dumps({k: v for k, v in good.items() if k != "merchant_id"}),
        "wrong type": orjson.dumps({**good, "ts": "yesterday"}),
        "NaN amount": orjson.dumps(good).replace(b'"amount":25.0', b'"amount":NaN'),
        "negative amount": orjson.dumps({**good, "amount": -3}),
        "unknown enum": orjson.dumps({**good, "method": "cheque"}),
        "unaccepted currency": orjson.dumps({**good, "currency": "USD"}),
        "future ts": orjson.dumps({**good, "ts": good["ts"] + 86_400_000}),
    }
    await client.send("payments", "carol", payment("carol-before", "carol"))
    for raw in bad.values():
        await client.send("payments", "carol", raw)
    await client.send("payments", "carol", payment("carol-after", "carol"))

    letters = await client.read("dead-letters", until=lambda rs: len(rs) >= len(bad))
    assert len(letters) == len(bad)
    for letter, raw in zip(sorted(letters, key=lambda r: r["offset"]), bad.values(), strict=True):
        assert letter["source_topic"].endswith("payments")
        assert letter["value"] == raw.decode()
        assert letter["error"]
        assert {"partition", "offset", "ts"} <= letter.keys()
    errors = " | ".join(r["error"] for r in letters)
    for needle in ("not valid JSON", "merchant_id", "ts must be an integer", "finite", "> 0",
                   "method must be one of", "currency 'USD' is not accepted", "in the future"):
        assert needle in errors

    decisions = await client.read(
        "risk-decisions", until=lambda rs: len(for_user("carol")(rs)) >= 2, settle=1.0
    )
    assert sorted(d["event_id"] for d in for_user("carol")(decisions)) == ["carol-after", "carol-before"]


async def test_non_utf8_value_is_dead_lettered_as_base64(client: Client) -> None:
    await client.send("orders", "m-bin", b"\xff\xfe\x00binary")
    letters = await client.read(
        "dead-letters", until=lambda rs: any(r.get("value_encoding") == "base64" for r in rs)
    )
    letter = next(r for r in letters if r.get("value_encoding") == "base64")
    assert letter["source_topic"].endswith("orders")


async def test_duplicate_event_id_gets_no_second_decision(client: Client) -> None:
    p = payment("pay-dave-1", "dave")
    await client.send("payments", "dave", p)
    await client.send("payments", "dave", p)
    await client.send("payments", "dave", payment("pay-dave-2", "dave"))
    decisions = await client.read(
        "risk-decisions", until=lambda rs: len(for_user("dave")(rs)) >= 2, settle=1.5
    )
    assert sorted(d["event_id"] for d in for_user("dave")(decisions)) == ["pay-dave-1", "pay-dave-2"]


def test_fixture_paths_are_isolated(worker: WorkerProcess) -> None:
    assert Path(worker.data_dir).exists()
