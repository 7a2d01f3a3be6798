"""The ruleset in force on a worker, and its replacement by rulesets published on `risk-rules`.

Every worker reads the whole control topic (see broadcast.py), so each one applies the same
sequence of rulesets. The newest valid record wins, whatever its key (the ruleset's name); an
invalid one is rejected with every problem named, and the ruleset in force stays.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from streamrisk.events import shown
from streamrisk.rules.ruleset import Ruleset, RulesetError, default_ruleset, load_ruleset

log = logging.getLogger(__name__)


def initial_ruleset(path: Path | None) -> Ruleset:
    """The ruleset a worker starts with: STREAMRISK_RULES when set, else the shipped default.

    A broken file stops the worker at start (RulesetError), rather than running other rules.
    """
    return load_ruleset(path) if path is not None else default_ruleset()


class RulesControl:
    """Holds the active ruleset; `publish` swaps in a new one only when it loads cleanly."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self.loaded = 0
        self.rejected = 0
        self.last_error: str | None = None

    def publish(self, name: str, value: bytes | None) -> str | None:
        """Apply one control record; the error that rejected it, or None when it took effect.

        A tombstone (no value) is ignored: deleting a ruleset's record must not leave a worker
        without rules, and the other workers could not agree on what to fall back to.
        """
        if value is None:
            log.info("risk-rules: tombstone for %r ignored; ruleset %s stays", name, self.ruleset.version)
            return None
        try:
            raw: Any = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            return self._reject(name, f"not valid JSON: {exc}")
        if not isinstance(raw, Mapping):
            return self._reject(name, "a ruleset must be a JSON object with version and rules")
        try:
            ruleset = load_ruleset(raw)
        except RulesetError as exc:
            return self._reject(name, str(exc))
        previous, self.ruleset = self.ruleset, ruleset
        self.loaded += 1
        log.info(
            "risk-rules: ruleset %r version %s in force (was %s)",
            name, ruleset.version, previous.version,
        )
        return None

    def _reject(self, name: str, error: str) -> str:
        self.rejected += 1
        text = f"ruleset {shown(name)} rejected: {error}"
        # Problems quote the offending values: bound the text logged, kept in /stats and dead-lettered.
        self.last_error = text if len(text) <= 1000 else f"{text[:980]}... ({len(text)} chars)"
        log.error("risk-rules: %s; ruleset %s stays in force", self.last_error, self.ruleset.version)
        return self.last_error

    def stats(self) -> dict[str, Any]:
        return {
            "rules_version": self.ruleset.version,
            "rulesets_loaded": self.loaded,
            "rulesets_rejected": self.rejected,
            "last_ruleset_error": self.last_error,
            "rule_errors": self.ruleset.error_counts(),
        }
