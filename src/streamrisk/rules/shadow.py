"""Shadow rulesets: a candidate published with `"mode": "shadow"` decides every payment beside the
ruleset in force and never acts. Its would-be decisions go to an internal topic (for
`streamrisk shadow-report`) and its agreement with the live ruleset is counted for /stats and /metrics.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..core.decisions import decision_record
from ..core.events import Payment
from .ruleset import Context, Ruleset
from .verdict import Verdict, decide


class ShadowTally:
    """Agreement of one shadow ruleset with the live one, since that shadow was published."""

    __slots__ = ("actions", "decisions", "reasons_live", "reasons_shadow", "same_action",
                 "same_reasons", "version")

    def __init__(self, version: str) -> None:
        self.version = version
        self.decisions = 0
        self.same_action = 0
        self.same_reasons = 0  # same action and the same reason codes
        self.actions: Counter[tuple[str, str]] = Counter()  # (live, shadow) action -> payments
        self.reasons_live: Counter[str] = Counter()
        self.reasons_shadow: Counter[str] = Counter()

    def observe(self, live: Verdict, shadow: Verdict) -> None:
        self.decisions += 1
        self.actions[(live.action, shadow.action)] += 1
        if live.action == shadow.action:
            self.same_action += 1
            if live.reasons == shadow.reasons or set(live.reasons) == set(shadow.reasons):
                self.same_reasons += 1
        self.reasons_live.update(live.reasons)
        self.reasons_shadow.update(shadow.reasons)

    def samples(self) -> list[tuple[str, dict[str, str], int]]:
        """The counts as Prometheus samples (metric name, labels, value), for /metrics:
        `streamrisk_shadow_decisions{version, live_action, shadow_action}` and
        `streamrisk_shadow_reasons{version, side, reason}`."""
        out = [("streamrisk_shadow_decisions",
                 {"version": self.version, "live_action": a, "shadow_action": b}, n)
               for (a, b), n in sorted(self.actions.items())]
        for side, counts in (("live", self.reasons_live), ("shadow", self.reasons_shadow)):
            out += [("streamrisk_shadow_reasons", {"version": self.version, "side": side, "reason": r}, n)
                    for r, n in sorted(counts.items())]
        return out

    def stats(self) -> dict[str, Any]:
        """For /stats; /metrics reads the same numbers through samples()."""
        reasons = sorted(set(self.reasons_live) | set(self.reasons_shadow))
        return {
            "version": self.version,
            "decisions": self.decisions,
            "same_action": self.same_action,
            "same_reasons": self.same_reasons,
            "agreement": self.same_action / self.decisions if self.decisions else None,
            "actions": {f"{a}->{b}": n for (a, b), n in sorted(self.actions.items())},
            "reasons": {r: {"live": self.reasons_live[r], "shadow": self.reasons_shadow[r]}
                        for r in reasons},
        }


class ShadowRun:
    """Decides payments with the shadow ruleset; one per processor."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.tally: ShadowTally | None = None
        # (live ruleset, shadow ruleset, whether they score alike): compared once per pair, not per payment
        self._pair: tuple[Ruleset | None, Ruleset, bool] | None = None

    def observe(self, ruleset: Ruleset, payment: Payment, ctx: Context, live: Verdict,
                explain: bool = False, live_ruleset: Ruleset | None = None) -> dict[str, Any] | None:
        """The shadow's would-be decision record for `payment` (None from a run that keeps its
        decisions itself: a backtest's); counts its agreement with `live` (decided by
        `live_ruleset`: its score is reused when the shadow's is the same formula)."""
        tally = self.tally
        if tally is None or tally.version != ruleset.version:
            tally = self.tally = ShadowTally(ruleset.version)
        verdict = self.decide(ruleset, ctx, live, explain, live_ruleset)
        tally.observe(live, verdict)
        record = decision_record(payment, verdict.action, verdict.score, verdict.reasons,
                                 verdict.rules_version)
        record["shadow"] = True
        record["live_action"] = live.action
        record["live_reasons"] = list(live.reasons)
        record["live_rules_version"] = live.rules_version
        if verdict.explanation is not None:
            record["explanation"] = verdict.explanation
        return record

    def decide(self, ruleset: Ruleset, ctx: Context, live: Verdict, explain: bool = False,
               live_ruleset: Ruleset | None = None) -> Verdict:
        """The shadow's verdict for a payment the live ruleset decided `live` (see observe)."""
        pair = self._pair
        if pair is None or pair[0] is not live_ruleset or pair[1] is not ruleset:
            formula = ruleset.score_model.formula
            same = live_ruleset is not None and live_ruleset.score_model.formula == formula
            pair = self._pair = (live_ruleset, ruleset, same)
        return decide(ruleset, ctx, explain, live.score if pair[2] else None)

    def stats(self) -> dict[str, Any] | None:
        return None if self.tally is None else self.tally.stats()
