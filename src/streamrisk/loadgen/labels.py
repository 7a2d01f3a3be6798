"""Ground truth of the scenario traffic: one label per sent event, kept beside the stream (the side
file `labels.jsonl`), never in the records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FRAUD, CREDIT, NORMAL, MALFORMED = "fraud", "credit", "normal", "malformed"


@dataclass
class Label:
    """Ground truth of one event: which scenario, what kind of behaviour, about whom."""

    event_id: str
    topic: str
    scenario: str
    label: str
    subject_type: str
    subject_id: str
    ts: int
    instance: str = ""  # which occurrence of the scenario ("" for normal life)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()
