"""Loading a ruleset: parse YAML/JSON, validate every rule, type-check its CEL condition on probe
contexts, compile. All-or-nothing: RulesetError lists every problem, so the caller keeps its ruleset."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
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
from streamrisk.rules.ruleset import (
    ACTIONS,
    HIGH_SCORE,
    SEVERITIES,
    Rule,
    Ruleset,
    RulesetError,
    Spec,
    flat_variables,
)
from streamrisk.rules.schema import CONTEXT_SCHEMA, NUM
from streamrisk.rules.score import ScoreConfigError, ScoreModel

MAX_RULES: Final = 1000
MAX_EXPRESSION_CHARS: Final = 4096

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_REASON = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$")
_TOP_KEYS = frozenset({"version", "description", "params", "rules", "score", "meta"})
_RULE_KEYS = frozenset({"name", "when", "action", "severity", "reason", "description", "enabled"})
_REQUIRED_RULE_KEYS = ("name", "when", "action", "severity", "reason")


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

