"""The ruleset in force on a worker, and its replacement by rulesets published on `risk-rules`.

Every worker reads the whole control topic (see broadcast.py), so each one applies the same
sequence of rulesets. The newest valid record wins, whatever its key (the ruleset's name); an
invalid one is rejected with every problem named, and the ruleset in force stays.

A record with `"mode": "shadow"` sets the shadow ruleset instead (rules/shadow.py): evaluated beside
the live one, never acting. Publishing the same version with `"mode": "live"` promotes it (the
shadow slot empties); a tombstone under the shadow's name retires it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from streamrisk.core.events import shown
from streamrisk.rules.loading import default_ruleset, load_ruleset
from streamrisk.rules.ruleset import Ruleset, RulesetError

log = logging.getLogger(__name__)

LIVE, SHADOW = "live", "shadow"


def initial_ruleset(path: Path | None) -> Ruleset:
    """The ruleset a worker starts with: STREAMRISK_RULES when set, else the shipped default.

    A broken file stops the worker at start (RulesetError), rather than running other rules.
    """
    return load_ruleset(path) if path is not None else default_ruleset()


class RulesControl:
    """Holds the active ruleset; `publish` swaps in a new one only when it loads cleanly."""

    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self.shadow: Ruleset | None = None
        self.shadow_name: str | None = None
        self.loaded = 0
        self.rejected = 0
        self.last_error: str | None = None

    def publish(self, name: str, value: bytes | None) -> str | None:
        """Apply one control record; the error that rejected it, or None when it took effect.

        A tombstone (no value) is ignored: deleting a ruleset's record must not leave a worker
        without rules, and the other workers could not agree on what to fall back to.
        """
        if value is None:
            if self.shadow is not None and name == self.shadow_name:
                log.info("risk-rules: shadow %s retired (tombstone for %r)", self.shadow.version, name)
                self.shadow = self.shadow_name = None
                return None
            log.info("risk-rules: tombstone for %r ignored; ruleset %s stays", name, self.ruleset.version)
            return None
        try:
            raw: Any = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            return self.reject(name, f"not valid JSON: {exc}")
        if not isinstance(raw, Mapping):
            return self.reject(name, "a ruleset must be a JSON object with version and rules")
        raw = dict(raw)
        mode = raw.pop("mode", LIVE)
        if mode not in (LIVE, SHADOW):
            return self.reject(name, f"mode must be {LIVE!r} or {SHADOW!r} (got {mode!r})")
        try:
            ruleset = load_ruleset(raw)
        except RulesetError as exc:
            return self.reject(name, str(exc))
        self.loaded += 1
        if mode == SHADOW:
            self.shadow, self.shadow_name = ruleset, name
            log.info("risk-rules: ruleset %r version %s in shadow beside %s",
                     name, ruleset.version, self.ruleset.version)
            return None
        previous, self.ruleset = self.ruleset, ruleset
        if self.shadow is not None and self.shadow.version == ruleset.version:
            self.shadow = self.shadow_name = None  # promoted
        log.info(
            "risk-rules: ruleset %r version %s in force (was %s)",
            name, ruleset.version, previous.version,
        )
        return None

    def reject(self, name: str, error: str) -> str:
        self.rejected += 1
        text = f"ruleset {shown(name)} rejected: {error}"
        # Problems quote the offending values: bound the text logged, kept in /stats and dead-lettered.
        self.last_error = text if len(text) <= 1000 else f"{text[:980]}... ({len(text)} chars)"
        log.error("risk-rules: %s; ruleset %s stays in force", self.last_error, self.ruleset.version)
        return self.last_error

    def stats(self) -> dict[str, Any]:
        return {
            "rules_version": self.ruleset.version,
            "shadow_rules_version": None if self.shadow is None else self.shadow.version,
            "rulesets_loaded": self.loaded,
            "rulesets_rejected": self.rejected,
            "last_ruleset_error": self.last_error,
            "rule_errors": self.ruleset.error_counts(),
        }
