"""Credit as people see it in a load test or the demo: adjustments read back, counted by reason."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

LIMIT_TOPIC, LINE_TOPIC = "credit-limit-adjustments", "credit-line-adjustments"


@dataclass
class CreditWatch:
    """Counts the adjustments a load test or the demo reads back, by kind and reason."""

    prefix: str = ""
    limits: dict[str, int] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    raised: int = 0  # limit adjustments upwards
    cut: int = 0  # and downwards (cuts and freezes)
    line_records: int = 0

    def topics(self) -> list[str]:
        return [self.prefix + LIMIT_TOPIC, self.prefix + LINE_TOPIC]

    def take(self, topic: str, values: Iterable[bytes]) -> bool:
        """Count the records if `topic` is an adjustment topic; False for any other topic."""
        if topic not in (self.prefix + LIMIT_TOPIC, self.prefix + LINE_TOPIC):
            return False
        user = topic.endswith(LIMIT_TOPIC)
        counts = self.limits if user else self.lines
        for raw in values:
            a = orjson.loads(raw)
            for r in a["reasons"]:
                counts[r] = counts.get(r, 0) + 1
            if user:
                up = a["new_limit"] > a["previous_limit"]
                self.raised += up
                self.cut += not up
            else:
                self.line_records += 1
        return True

    def summary_lines(self) -> list[str]:
        def top(counts: dict[str, int]) -> str:
            return ", ".join(f"{k}={v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"

        return [
            f"  limit adjustments   {self.raised} up, {self.cut} down; {top(self.limits)}",
            f"  line adjustments    {self.line_records}; {top(self.lines)}",
        ]


def reasons_by_kind(adjustments: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Adjustment records (both topics) counted by kind ("limit", "line") and reason code."""
    out: dict[str, dict[str, int]] = {"limit": {}, "line": {}}
    for a in adjustments:
        counts = out["limit" if "new_limit" in a else "line"]
        for r in a.get("reasons", ()):
            counts[r] = counts.get(r, 0) + 1
    return out
