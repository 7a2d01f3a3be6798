"""A validated ruleset and its evaluation: CEL conditions (run as generated Python where they allow it),
params and a logistic score. Evaluation never raises. Loading and validation: rules/loading.py."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import cel

from streamrisk.rules.expr import readable_error
from streamrisk.rules.pyeval import Untranslatable, compile_rules
from streamrisk.rules.score import ScoreModel

log = logging.getLogger(__name__)

ACTIONS: Final = ("review", "decline", "alert")
SEVERITIES: Final = ("low", "medium", "high")
#: Reserved reason added by decide() when the score alone raised the action.
HIGH_SCORE: Final = "HIGH_SCORE"

Context = Mapping[str, Mapping[str, Any]]


class RulesetError(ValueError):
    """A ruleset that cannot be loaded; ``problems`` lists every reason, each naming its rule."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid ruleset: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class FiredRule:
    """A rule whose condition held for a payment."""

    name: str
    action: str  # review | decline | alert
    severity: str  # low | medium | high
    reason: str
    # Whom an alert of this rule is about: "merchant" when the condition reads merchant.*
    # fields only (the merchant's owner raises it, see Ruleset.evaluate_merchant), else "user".
    subject: str = "user"


@dataclass(frozen=True, slots=True)
class Rule:
    """A validated rule as written in the ruleset."""

    name: str
    when: str
    action: str
    severity: str
    reason: str
    description: str = ""
    enabled: bool = True


#: (flat CEL variable, namespace, field, is_numeric) for every field the rules read.
Spec = tuple[str, str, str, bool]


# Integral doubles within this bound are passed to CEL as ints: the binding converts an
# int ~4x faster than a float (it tries int extraction first), and every numeric field
# is wrapped in double() by expr.prepare, so rules still only ever see doubles.
_EXACT = 2.0**53


def _cel_number(value: Any) -> int | float:
    f = float(value)
    return int(f) if f.is_integer() and -_EXACT < f < _EXACT else f


def flat_variables(specs: tuple[Spec, ...], ctx: Context) -> dict[str, Any]:
    """The CEL variables for one payment: every field the rules read, flattened.

    A missing or non-numeric value is left out, so only the rules reading it error.
    """
    out: dict[str, Any] = {}
    for name, ns, field, num in specs:
        try:
            value = ctx[ns][field]
            if num and type(value) is not int:  # exact type: bool must become a number
                value = _cel_number(value)
        except Exception:
            continue
        out[name] = value
    return out


class _Batch:
    """Rules evaluated together: one CEL program returns all their booleans.

    Converting a value into CEL costs ~1 µs and dominates evaluation, so every field is
    converted once per call and one program returns all rules' booleans; its cost grows
    with distinct fields, not with rules (scripts/bench_rules.py compares the alternatives).
    """

    __slots__ = ("combined", "fast", "fired", "programs", "specs")

    def __init__(
        self,
        fired: tuple[FiredRule, ...],
        programs: tuple[cel.Program, ...],
        specs: tuple[tuple[Spec, ...], ...],
    ) -> None:
        self.fired = tuple(fired)
        self.programs = tuple(programs)
        self.specs = tuple({sp[0]: sp for rule in specs for sp in rule}.values())
        self.combined = (
            cel.compile("[" + ", ".join(f"({p.source})" for p in programs) + "]")
            if programs else None
        )
        # The same conditions as Python when they are all in the common subset (rules/pyeval.py).
        try:
            self.fast = compile_rules([p.source for p in programs], self.specs) if programs else None
        except Untranslatable:
            self.fast = None


class Ruleset:
    """An immutable, validated ruleset; build it with load_ruleset() or default_ruleset() (rules/loading.py).

    evaluate()/score() are synchronous and keep no per-call state on the instance apart
    from counters, so one Ruleset can be shared by every agent of a worker.
    """

    def __init__(
        self,
        version: str,
        rules: tuple[Rule, ...],
        params: Mapping[str, Any],
        score_model: ScoreModel,
        programs: tuple[cel.Program, ...],
        specs: tuple[tuple[Spec, ...], ...],
        source: Mapping[str, Any],
    ) -> None:
        self.version = version
        self.rules = rules
        self.params = dict(params)
        self.score_model = score_model
        self._source = source
        self._active = tuple(r for r in rules if r.enabled)
        fired = tuple(
            FiredRule(r.name, r.action, r.severity, r.reason,
                      "merchant" if rule_specs and all(sp[1] == "merchant" for sp in rule_specs)
                      else "user")
            for r, rule_specs in zip(self._active, specs, strict=True)
        )
        self._all = _Batch(fired, programs, specs)
        # Rule name -> the (namespace, field) pairs its condition reads, for explanations.
        self.fields_read: dict[str, tuple[tuple[str, str], ...]] = {
            f.name: tuple((sp[1], sp[2]) for sp in rule_specs)
            for f, rule_specs in zip(fired, specs, strict=True)
        }
        merchant = [i for i, f in enumerate(fired) if f.subject == "merchant"]
        self._merchant = _Batch(
            tuple(fired[i] for i in merchant),
            tuple(programs[i] for i in merchant),
            tuple(specs[i] for i in merchant),
        )
        #: The merchant.* fields the merchant-only rules read: evaluate_merchant depends on these
        #: alone, so a caller may skip it when they have not changed (empty: no merchant rules).
        self.merchant_fields = tuple(sp[2] for sp in self._merchant.specs)
        self.evaluations = 0
        self._errors: dict[str, int] = {}
        self._last_errors: dict[str, str] = {}

    # -- evaluation ---------------------------------------------------------------

    def user_alerts_for(self, reasons: Iterable[str]) -> list[tuple[str, str]]:
        """(reason, severity) of the enabled user rules carrying one of `reasons`: what a stored
        decision's reasons fired, for a payment read again after a crash (processor.py)."""
        wanted = set(reasons)
        return [(f.reason, f.severity) for f in self._all.fired if f.subject == "user" and f.reason in wanted]

    def evaluate(self, ctx: Context) -> list[FiredRule]:
        """The enabled rules whose condition holds, in ruleset order; never raises.

        A rule whose condition errors (missing/invalid value, division by zero...) does
        not fire; the error is counted in error_counts().
        """
        self.evaluations += 1
        return self._run(self._all, ctx)

    def evaluate_merchant(self, merchant: Mapping[str, Any]) -> list[FiredRule]:
        """The enabled merchant-only rules (reading only merchant.*) that hold for a merchant.

        Its owner calls this when the merchant's state changes, so a refund spike raises an
        alert even before the next payment at that merchant.
        """
        return self._run(self._merchant, {"merchant": merchant})

    def _run(self, batch: _Batch, ctx: Context) -> list[FiredRule]:
        if batch.combined is None:
            return []
        if batch.fast is not None:
            hits = batch.fast(ctx)
            if hits is not None:  # else a value the fast path does not take: CEL decides
                return [fired for fired, hit in zip(batch.fired, hits, strict=True) if hit]
        variables = flat_variables(batch.specs, ctx)
        try:
            hits = batch.combined.execute(variables)
        except Exception:
            return self._evaluate_each(batch, variables)  # slow path: find the failing rule(s)
        return [fired for fired, hit in zip(batch.fired, hits, strict=True) if hit is True]

    def _evaluate_each(self, batch: _Batch, variables: dict[str, Any]) -> list[FiredRule]:
        cel_ctx = cel.Context()
        for name, value in variables.items():
            try:
                cel_ctx.add_variable(name, value)
            except Exception:
                continue  # a value CEL cannot represent: the rules reading it error below
        out = []
        for fired, program in zip(batch.fired, batch.programs, strict=True):
            try:
                hit = program.execute(cel_ctx)
            except Exception as exc:
                self._count_error(fired.name, readable_error(exc))
                continue
            if hit is True:
                out.append(fired)
            elif hit is not False:
                self._count_error(fired.name, f"condition returned {hit!r}, not a bool")
        return out

    def _count_error(self, rule: str, message: str) -> None:
        count = self._errors.get(rule, 0) + 1
        self._errors[rule] = count
        self._last_errors[rule] = message
        if count == 1:  # once per rule, so a broken feed cannot flood the log
            log.warning("ruleset %s: rule %r failed to evaluate: %s",
                        self.version, rule, message)

    def score(self, ctx: Context) -> float:
        """The logistic risk score in [0, 1]; missing features count as 0."""
        return self.score_model.score(ctx)

    # -- introspection ------------------------------------------------------------

    def error_counts(self) -> dict[str, int]:
        """Evaluation errors per rule name since load (rules without errors are absent)."""
        return dict(self._errors)

    def last_errors(self) -> dict[str, str]:
        """The most recent evaluation error message per rule name."""
        return dict(self._last_errors)

    @property
    def total_errors(self) -> int:
        """Evaluation errors of all rules since load."""
        return sum(self._errors.values())

    def to_mapping(self) -> dict[str, Any]:
        """A deep copy of the ruleset as loaded, e.g. to publish the active ruleset."""
        return copy.deepcopy(dict(self._source))

    def __repr__(self) -> str:
        return f"Ruleset(version={self.version!r}, rules={len(self.rules)})"
