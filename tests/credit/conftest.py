"""Policies for the credit tests: the shipped one, and a small one whose numbers are easy to follow."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from streamrisk.credit.policy import CreditPolicy, default_policy, load_policy

DAY = 86_400_000
T0 = 1_764_000_000_000  # 2025-11-24T16:00Z: every scenario starts here


def policy_mapping(**user: Any) -> dict[str, Any]:
    """The shipped policy as a mapping, with user keys overridden."""
    from importlib import resources

    text = resources.files("streamrisk.credit").joinpath("default_policy.yaml").read_text("utf-8")
    raw = yaml.safe_load(text)
    raw = copy.deepcopy(raw)
    raw["user"].update(user)
    return raw


def small_policy(**user: Any) -> CreditPolicy:
    """Default policy, with a 1000.00 initial limit and round steps: 7-day reviews, 30-day cooldown."""
    return load_policy(policy_mapping(**{"initial_limit": 1000.0, "segments": [], **user}))


@pytest.fixture
def policy() -> CreditPolicy:
    return default_policy()
