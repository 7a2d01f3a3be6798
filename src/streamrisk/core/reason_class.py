"""A dead letter's reason class: a short, bounded label for its free-text error (metrics, /stats)."""

from __future__ import annotations

# First match wins; the phrases are the starts of the errors events.py and the rules control raise.
_CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    # A record that made the processor fail (a bug), isolated from its batch.
    ("processing_failed", ("processing failed with",)),
    ("not_json", ("not valid JSON", "must be a JSON object", "empty message value")),
    ("missing_field", ("missing required field",)),
    ("wrong_key", ("message key",)),
    ("wrong_partition", ("default partitioner puts its key", "record is on partition")),
    ("too_large", ("more than the limit of", "too large")),
)
RULESET = "ruleset"
BAD_VALUE = "bad_value"


def reason_class(error: str, ruleset: bool = False) -> str:
    """`ruleset` for a rejected ruleset; else the class of an input record's contract violation."""
    if ruleset:
        return RULESET
    for name, phrases in _CLASSES:
        if any(p in error for p in phrases):
            return name
    return BAD_VALUE
