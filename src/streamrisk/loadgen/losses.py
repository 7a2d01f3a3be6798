"""The load test's credit losses: the traffic it sent, replayed offline through the worker's core twice,
once under the deployment's (adaptive) credit policy and once under the static-limit policy
(credit/static_policy.yaml), with the same ruleset; each side's approved credit volume and losses, in
all and per scenario (backtest/losses.py), printed side by side."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from ..backtest.losses import CreditLedger, format_losses, format_losses_by_scenario
from ..backtest.offline import run_backtest
from ..credit import use_policy
from ..credit.policy import shipped_policy
from ..recording.jsonl import Recorded
from ..rules.control import initial_ruleset
from ..settings import Settings
from .labels import Label

LABELS = ("adaptive", "static")


def credit_losses(sent: Iterable[tuple[str, str, dict[str, Any]]], labels: Iterable[Label],
                  settings: Settings) -> tuple[str, dict[str, Any]]:
    """(the tables as text, the figures as JSON data) for the records `sent`, in the order sent, with
    event time as record time (as `scripts/scenario_recording.py` writes them)."""
    static = shipped_policy("static_policy.yaml")
    records = [Recorded(topic, key, orjson.dumps(value), value["ts"]) for topic, key, value in sent]
    ruleset = initial_ruleset(settings.rules_path)
    ledger = CreditLedger()

    def configure(processor: Any, is_candidate: bool) -> None:
        if is_candidate:
            use_policy(processor, static)

    run_backtest(records, settings, ruleset, ruleset, configure=configure, shared=False, ledger=ledger)
    scenario = {lab.event_id: lab.scenario for lab in labels}
    text = "\n".join([format_losses(ledger, LABELS),
                      format_losses_by_scenario(ledger, lambda eid: scenario.get(eid, "normal"), LABELS)])
    return text, {name: ledger.losses(side).as_dict() for side, name in enumerate(LABELS)}
