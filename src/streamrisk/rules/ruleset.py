"""Load, validate and evaluate a ruleset: CEL conditions, params and a logistic score.
Loading is all-or-nothing (RulesetError lists every problem); evaluation never raises."""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

import cel
import yaml

from streamrisk.rules.expr import (
    SEPARATOR,
    ExpressionError,
    cel_literal,
    compile_checked,
    prepare,
    readable_error,
)
from streamrisk.rules.pyeval import Untranslatable, compile_rules
from streamrisk.rules.schema import CONTEXT_SCHEMA, NUM
from streamrisk.rules.score import ScoreConfigError, ScoreModel

log = logging.getLogger(__name__)

ACTIONS: Final = ("review", "decline", "alert")
SEVERITIES: Final = ("low", "medium", "high")
#: Reserved reason added by decide() when the score alone raised the action.
HIGH_SCORE: Final = "HIGH_SCORE"

MAX_RULES: Final = 1000
MAX_EXPRESSION_CHARS: Final = 4096

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_REASON = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$")
_TOP_KEYS = frozenset({"version", "description", "params", "rules", "score", "meta"})
_RULE_KEYS = frozenset({"name", "when", "action", "severity", "reason", "description", "enabled"})
_REQUIRED_RULE_KEYS = ("name", "when", "action", "severity", "reason")

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


def _probe_contexts() -> list[dict[str, dict[str, Any]]]:
    """Synthetic contexts used at load to catch type errors CEL only finds when evaluating."""
    probes = []
    for num, text, method in ((0.0, "", "card"), (1.0, "x", "credit_line"),
                              (1e9, "DE", "wallet"), (-1.0, "EUR", "card")):
        probe = {
            ns: {f: (num if kind == NUM else text) for f, kind in fields.items()}
            for ns, fields in CONTEXT_SCHEMA.items()
        }
        probe["payment"]["method"] = method
        probes.append(probe)
    return probes


_PROBES: Final = _probe_contexts()


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
    """An immutable, validated ruleset; build it with load_ruleset() or default_ruleset().

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


# -- loading ----------------------------------------------------------------------


def _read(source: Path | str) -> Any:
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesetError([f"cannot read {path}: {exc}"]) from exc
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise RulesetError([f"cannot parse {path}, line {exc.lineno}: {exc.msg}"]) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        what = " ".join(filter(None, (exc.context, exc.problem)))
        raise RulesetError([f"cannot parse {path}{where}: {what}"]) from exc
    except (ValueError, yaml.YAMLError) as exc:
        raise RulesetError([f"cannot parse {path}: {exc}"]) from exc


def _rule_problems(index: int, raw: Any, seen: set[str]) -> tuple[str, list[str]]:
    """The rule's label for messages and its structural problems."""
    if not isinstance(raw, Mapping):
        return f"rule #{index}", ["must be a mapping"]
    name = raw.get("name")
    label = f"rule {name!r} (#{index})" if isinstance(name, str) else f"rule #{index}"
    problems = []
    missing = [k for k in _REQUIRED_RULE_KEYS if k not in raw]
    if missing:
        problems.append(f"missing key(s) {missing}")
    unknown = sorted(set(map(str, raw)) - _RULE_KEYS)
    if unknown:
        problems.append(f"unknown key(s) {unknown}")
    if "name" in raw:
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append("name must be snake_case ([a-z][a-z0-9_]*, at most 64 chars)")
        elif name in seen:
            problems.append("duplicate rule name")
        else:
            seen.add(name)
    action, severity, reason = raw.get("action"), raw.get("severity"), raw.get("reason")
    if "action" in raw and action not in ACTIONS:
        problems.append(f"unknown action {action!r} (expected one of {', '.join(ACTIONS)}; "
                        "approve is the absence of a rule)")
    if "severity" in raw and severity not in SEVERITIES:
        problems.append(f"unknown severity {severity!r} (expected {', '.join(SEVERITIES)})")
    if "reason" in raw:
        if not isinstance(reason, str) or not _REASON.match(reason) or len(reason) > 64:
            problems.append(f"reason {reason!r} is not an UPPER_SNAKE_CASE code")
        elif reason == HIGH_SCORE:
            problems.append(f"reason {HIGH_SCORE} is reserved for the score")
    when = raw.get("when")
    if "when" in raw and (not isinstance(when, str) or not when.strip()):
        problems.append("when must be a non-empty string")
    elif isinstance(when, str) and len(when) > MAX_EXPRESSION_CHARS:
        problems.append(f"when is longer than {MAX_EXPRESSION_CHARS} characters")
    if not isinstance(raw.get("description", ""), str):
        problems.append("description must be a string")
    if not isinstance(raw.get("enabled", True), bool):
        problems.append("enabled must be true or false")
    return label, problems


def _type_check(program: cel.Program, specs: tuple[Spec, ...]) -> str | None:
    """Evaluate against the probe contexts; return the first problem found, if any."""
    for probe in _PROBES:
        try:
            result = program.execute(flat_variables(specs, probe))
        except Exception as exc:
            hint = ""
            if isinstance(exc, TypeError):
                hint = " (features and params are doubles: write 2.0, not 2)"
            return f"fails on a probe context: {readable_error(exc)}{hint}"
        if not isinstance(result, bool):
            return f"must return a bool, returned {type(result).__name__}"
    return None


def load_ruleset(source: Path | str | Mapping[str, Any]) -> Ruleset:
    """Validate and compile a ruleset from a YAML/JSON file path or a parsed mapping.

    Raises RulesetError listing every problem; nothing is half-loaded, so the caller
    can keep its previous ruleset.
    """
    raw = source if isinstance(source, Mapping) else _read(source)
    if not isinstance(raw, Mapping):
        raise RulesetError(["the ruleset must be a mapping with version, rules and score"])
    raw = copy.deepcopy(dict(raw))  # the caller may reuse or mutate its message
    problems: list[str] = []

    unknown = sorted(set(map(str, raw)) - _TOP_KEYS)
    if unknown:
        problems.append(f"unknown top-level key(s) {unknown} (put free-form data under meta)")
    version = raw.get("version")
    if not isinstance(version, str) or not version.strip():
        problems.append("version must be a non-empty string (quote dates in YAML)")
        version = ""

    params_raw = raw.get("params") or {}
    literals: dict[str, str] = {}
    if not isinstance(params_raw, Mapping):
        problems.append("params must be a mapping of name -> value")
        params_raw = {}
    for pname, pvalue in params_raw.items():
        if not isinstance(pname, str) or not re.match(r"^[A-Za-z_]\w*$", pname):
            problems.append(f"param name {pname!r} is not an identifier")
            continue
        try:
            literals[pname] = cel_literal(pvalue)
        except ExpressionError as exc:
            problems.append(f"param {pname!r}: {exc}")

    rules_raw = raw.get("rules")
    if rules_raw is None:
        rules_raw = []
    if not isinstance(rules_raw, list):
        problems.append("rules must be a list")
        rules_raw = []
    if len(rules_raw) > MAX_RULES:
        problems.append(f"more than {MAX_RULES} rules")

    rules: list[Rule] = []
    programs: list[cel.Program] = []
    specs: list[tuple[Spec, ...]] = []  # per enabled rule, aligned with programs
    seen: set[str] = set()
    for index, rule_raw in enumerate(rules_raw, start=1):
        label, rule_problems = _rule_problems(index, rule_raw, seen)
        if not rule_problems:
            try:
                prepared = prepare(rule_raw["when"], literals)
                program = compile_checked(prepared, rule_raw["when"])
            except ExpressionError as exc:
                rule_problems.append(f"condition {exc}")
            else:
                rule_specs = tuple(
                    (f"{ns}{SEPARATOR}{f}", ns, f, CONTEXT_SCHEMA[ns][f] == NUM)
                    for ns, f in prepared.fields
                )
                problem = _type_check(program, rule_specs)
                if problem:
                    rule_problems.append(f"condition {problem}")
                elif rule_raw.get("enabled", True):  # disabled rules cost nothing
                    specs.append(rule_specs)
        if rule_problems:
            problems.extend(f"{label}: {p}" for p in rule_problems)
            continue
        rule = Rule(
            name=rule_raw["name"], when=rule_raw["when"], action=rule_raw["action"],
            severity=rule_raw["severity"], reason=rule_raw["reason"],
            description=rule_raw.get("description", ""), enabled=rule_raw.get("enabled", True),
        )
        rules.append(rule)
        if rule.enabled:
            programs.append(program)

    try:
        score_model = ScoreModel.from_mapping(raw.get("score"))
    except ScoreConfigError as exc:
        problems.append(f"score: {exc}")

    if problems:
        raise RulesetError(problems)
    return Ruleset(version, tuple(rules), params_raw, score_model, tuple(programs),
                   tuple(specs), raw)


def default_ruleset() -> Ruleset:
    """The ruleset shipped with the package (streamrisk/rules/default.yaml)."""
    text = resources.files("streamrisk.rules").joinpath("default.yaml").read_text("utf-8")
    return load_ruleset(yaml.safe_load(text))

