"""Two workers on 4 partitions under steady traffic survive SIGKILLs, a join and a graceful stop:

    traffic ────────────────────────────────────────────────────────── stop ── drain ── checks
    w1, w2 ── kill ─ restart ── kill ─ restart ── w5 joins ── kill ─ restart ── one stops (SIGTERM)

Afterwards every payment has a decision, repeats are identical but for `decided_at`, features equal a
brute-force oracle, every user's credit_outstanding equals a brute force from what was sent and decided,
no worker crashed or went silent on /stats, and the group committed every input record; where the
workers run exactly-once (Apache Kafka), a read_committed reader sees exactly one decision per payment.
The figures (recovery after each kill, latency around it) are printed; scripts/chaos.py runs the same
thing longer, with broker kills (--broker-kills), and judges the latency target. On a broker with
static group membership (Apache Kafka) the workers are static members and a killed one comes back
under its instance id; the session timeout is the shortest the broker takes
(EmbeddedBroker.shortest_session_timeout_s).
"""

from __future__ import annotations

import pytest

from streamrisk.broker import EmbeddedBroker
from tests.chaos import ChaosPlan, ChaosRun, runs_exactly_once

pytestmark = [pytest.mark.integration, pytest.mark.timeout(360)]


async def test_no_payment_lost_or_changed_across_kills_join_and_stop(
    session_broker: EmbeddedBroker, bootstrap: str, tmp_path
) -> None:
    plan = ChaosPlan(duration_s=40, rate=120, kills=3, users=200, merchants=20, drain_s=60, say=print,
                     static_members=session_broker.supports("static_membership"),
                     exactly_once=runs_exactly_once(session_broker))
    timing = {"STREAMRISK_SESSION_TIMEOUT_S": str(session_broker.shortest_session_timeout_s)}
    result = await ChaosRun(bootstrap, tmp_path, plan, **timing).run()
    print(result.report())
    assert not result.failures(), "\n".join(["chaos checks failed:", *result.failures(), result.report()])
