"""On the broker: one stream through a worker deciding one record per batch and through one taking up to
500 per batch gives the same decision, alert and dead-letter ids.

The stream keeps every entity's events on one input topic (users: payments; merchants with merchant
rules: orders), because the order in which a consumer interleaves two topics is not part of the stream;
tests/test_processor_determinism.py covers mixed streams in the core.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streamrisk.loadgen import patterns
from tests.harness import Client, WorkerProcess, now_ms, unique

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

BATCHES = (1, 500)


@pytest.fixture(scope="module")
def workers(bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[int, WorkerProcess]]:
    started = {}
    for batch in BATCHES:
        data: Path = tmp_path_factory.mktemp(f"batch{batch}")
        started[batch] = WorkerProcess(bootstrap, unique(f"det{batch}") + ".", unique("app"), data,
                                       STREAMRISK_BATCH_MAX=str(batch)).start()
    yield started
    for w in started.values():
        w.stop()


def stream(tag: str, now: int) -> list[tuple[str, str, dict | bytes]]:
    records: list[tuple[str, str, dict | bytes]] = []
    records += patterns.velocity_burst(f"{tag}-burst", now)
    records += patterns.card_testing(f"{tag}-card", now)
    records += patterns.new_device_high_amount(f"{tag}-dev", now)
    records += patterns.refund_spike(f"{tag}-spike", now)
    for i in range(2):
        records += patterns.normal_user(f"{tag}-u{i}", now)
    records.sort(key=lambda r: r[2]["ts"])  # type: ignore[index]
    records.insert(len(records) // 2, ("payments", f"{tag}-u0", b"{not json"))
    records.append(("payments", f"{tag}-u1", {"event_id": "bad", "ts": now}))
    return records


async def test_every_output_id_is_the_same_with_batches_of_1_and_500(
    bootstrap: str, workers: dict[int, WorkerProcess]
) -> None:
    tag = unique("det")
    records = stream(tag, now_ms())
    n_payments = sum(1 for t, _, v in records if t == "payments" and isinstance(v, dict) and "amount" in v)
    seen: dict[int, tuple] = {}
    for batch, worker in workers.items():
        prefix = worker.env["STREAMRISK_TOPIC_PREFIX"]
        async with Client(bootstrap, prefix) as client:
            for topic, key, value in records:
                await client.send(topic, key, value)
            decisions = await client.read("risk-decisions", until=lambda rs: len(rs) >= n_payments,
                                          timeout=90)
            alerts = await client.read(
                "fraud-alerts", until=lambda rs: any("MERCHANT_REFUND_SPIKE" in a["reasons"] for a in rs),
                settle=1.5)
            dead = await client.read("dead-letters", until=lambda rs: len(rs) >= 2)
        # Sets: a record read again after a rebalance may be emitted twice, with the same id.
        seen[batch] = (
            {d["decision_id"] for d in decisions},
            {orjson.dumps([a["alert_id"], a["ts"], a["event_ids"], a["reasons"]]) for a in alerts},
            {(d["partition"], d["offset"], d["error"]) for d in dead},
        )
    one, many = seen[1], seen[500]
    assert len(one[0]) == n_payments and len(one[1]) >= 4 and len(one[2]) == 2
    assert one == many
