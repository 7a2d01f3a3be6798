"""The load test's credit-loss tables: what it sent, replayed offline under the adaptive policy and the
static-limit one, side by side, in all and per scenario."""

from __future__ import annotations

from streamrisk.loadgen.losses import credit_losses
from streamrisk.loadgen.scenarios import ScenarioTraffic, parse_mix
from streamrisk.loadgen.synthetic import Record
from streamrisk.settings import Settings

END = 1_764_000_000_000


def test_the_sent_traffic_gives_both_sides_losses_and_a_row_per_scenario_with_credit() -> None:
    mix = parse_mix("charged_back=0.01,credit_maxout=0.01,late_repayer=0.01")
    t = ScenarioTraffic(200, 20, end_ms=END, days=20, mix=mix, seed=3, run_id="cl")
    sent = []
    for i in range(3000):
        r = t.next(i / 3000)
        if isinstance(r, Record):
            sent.append((r.topic, r.key, r.value))
    text, figures = credit_losses(sent, t.labels, Settings())
    assert set(figures) == {"adaptive", "static"}
    a, s = figures["adaptive"], figures["static"]
    assert a["approved_credit_volume"] > 0 and s["approved_credit_volume"] > 0
    # The stolen purchases are charged back on both sides: their draws came before any signal.
    assert s["fraud_losses"] > 0 and a["fraud_losses"] == s["fraud_losses"]
    lines = text.splitlines()
    assert "adaptive" in lines[1] and "static" in lines[1]
    assert any(line.strip().startswith("target ") for line in lines)
    per = lines[lines.index(next(x for x in lines if x.startswith("credit losses per scenario"))) + 2:]
    names = [line.split()[0] for line in per]
    assert {"charged_back", "credit_maxout", "late_repayer", "normal"} <= set(names)
