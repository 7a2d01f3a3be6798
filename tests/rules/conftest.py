"""Fixtures for the rules tests."""

from __future__ import annotations

import pytest

from streamrisk.rules import Ruleset, default_ruleset


@pytest.fixture(scope="session")
def default() -> Ruleset:
    return default_ruleset()
