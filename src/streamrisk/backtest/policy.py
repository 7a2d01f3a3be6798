"""The credit-policy hook of a backtest: `--policy FILE` is applied to the candidate's processor.

The credit package (`streamrisk.credit`, issue 10) is expected to offer `load_policy(path)` and a
processor-side `use_policy(processor, policy)`. Until it is there, the backtest says so and runs the
rulesets without a policy: credit adjustments are then whatever the processor emits (none).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.processor import Processor

NOT_BUILT = (
    "credit policy: not built in this version (no streamrisk.credit package); "
    "--policy {path} is not applied and no credit adjustments can be compared"
)


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file and the problem."""


def credit_built() -> bool:
    """Whether this version has a credit policy (then state depends on decisions)."""
    return importlib.util.find_spec("streamrisk.credit") is not None


def policy_hook(path: Path | None) -> tuple[Callable[[Processor, bool], None] | None, str | None]:
    """(configure, note): `configure(processor, is_candidate)` applies the policy to the candidate;
    `note` says what could not be done, for the report."""
    if path is None:
        return None, None
    try:
        credit: Any = importlib.import_module("streamrisk.credit")
    except ModuleNotFoundError:
        return None, NOT_BUILT.format(path=path)
    load, use = getattr(credit, "load_policy", None), getattr(credit, "use_policy", None)
    if load is None or use is None:
        return None, NOT_BUILT.format(path=path).replace(
            "no streamrisk.credit package", "streamrisk.credit has no load_policy/use_policy")
    try:
        policy = load(path)
    except (OSError, ValueError) as exc:
        raise PolicyError(f"{path}: {exc}") from exc

    def configure(processor: Processor, is_candidate: bool) -> None:
        if is_candidate:
            use(processor, policy)

    return configure, None
