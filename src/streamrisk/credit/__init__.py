"""Credit: user credit limits and merchant credit lines, priced and adjusted from the streams.

`policy.py` loads the versioned policy file; `user.py` and `merchant.py` are the policy over plain
data (no Kafka, no table); `book.py` keeps the accounts in the state table and is what the processor
calls; `report.py` shows them (HTTP API, demo summary).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ..settings import Settings
from ..state.kv import KV
from ..state.store import EntityStore
from ..state.sweep import PartitionClock, key_partition
from .book import CreditBook
from .policy import CreditPolicy, PolicyError, default_policy, load_policy

__all__ = ["CreditBook", "CreditPolicy", "PolicyError", "credit_book", "default_policy", "load_policy",
           "use_policy"]


def credit_book(
    settings: Settings, kv: KV, merchants: EntityStore, settlement_ms: int,
    clock: PartitionClock | None = None,
) -> CreditBook | None:
    """The worker's credit book from its settings (None when credit is off); a broken policy file
    raises PolicyError naming every problem, so the worker stops at start. `clock`: the sweep's."""
    if not settings.credit_enabled:
        return None
    path = settings.credit_policy_path
    policy = load_policy(path) if path is not None else default_policy()
    return CreditBook(kv, policy, merchants, settlement_ms,
                      settings.topic("credit-limit-adjustments"), settings.topic("credit-line-adjustments"),
                      settings.credit_account_idle_ms, clock,
                      partial(key_partition, partitions=settings.partitions),
                      settings.topic("advance-decisions"))


def use_policy(processor: Any, policy: CreditPolicy) -> None:
    """Price a processor's credit with `policy` from its next event on (a backtest's candidate)."""
    if processor.credit is None:
        raise PolicyError("credit is off (STREAMRISK_CREDIT=off): there is no policy to replace")
    processor.credit.policy = policy
