"""Logistic risk score ``sigmoid(bias + w · x)`` over features named by the weights' keys:
``ns.field``, ``log1p(ns.field)`` (sign-preserving) or ``ns.field == 'text'`` (indicator)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from streamrisk.rules.schema import NUM, STR, field_kind

_KEY = re.compile(
    r"""^\s*(?:
        log1p\(\s*(?P<log_ns>[a-z]+)\.(?P<log_f>\w+)\s*\)
      | (?P<eq_ns>[a-z]+)\.(?P<eq_f>\w+)\s*==\s*'(?P<eq_v>[^'\\]*)'
      | (?P<ns>[a-z]+)\.(?P<f>\w+)
    )\s*$""",
    re.VERBOSE,
)

# Feature kinds, in the order they are filled.
_RAW, _LOG1P, _EQ = 0, 1, 2


class ScoreConfigError(ValueError):
    """A score section that cannot be used; the message says why."""


@dataclass(frozen=True, slots=True)
class ScoreFeature:
    """One entry of the feature vector."""

    key: str  # as written in the ruleset
    namespace: str
    field: str
    transform: str  # "raw" | "log1p" | "eq"
    equals: str | None = None


def parse_feature(key: str) -> ScoreFeature:
    """Parse a weight key into the feature it names; raise ScoreConfigError if invalid."""
    m = _KEY.match(key)
    if m is None:
        raise ScoreConfigError(
            f"weight key {key!r} is not `ns.field`, `log1p(ns.field)` or `ns.field == 'text'`"
        )
    if m["log_ns"]:
        ns, field, transform, equals = m["log_ns"], m["log_f"], "log1p", None
    elif m["eq_ns"]:
        ns, field, transform, equals = m["eq_ns"], m["eq_f"], "eq", m["eq_v"]
    else:
        ns, field, transform, equals = m["ns"], m["f"], "raw", None
    kind = field_kind(ns, field)
    if kind is None:
        raise ScoreConfigError(f"weight key {key!r}: unknown field '{ns}.{field}'")
    if transform == "eq" and kind != STR:
        raise ScoreConfigError(f"weight key {key!r}: `==` needs a string field")
    if transform != "eq" and kind != NUM:
        raise ScoreConfigError(f"weight key {key!r}: '{ns}.{field}' is not numeric")
    return ScoreFeature(key.strip(), ns, field, transform, equals)


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScoreConfigError(f"{name} must be a number, got {value!r}")
    f = float(value)
    if not math.isfinite(f):
        raise ScoreConfigError(f"{name} must be finite, got {value!r}")
    return f


class ScoreModel:
    """A logistic model whose weights were vectorised once, at load."""

    __slots__ = ("_keys", "_plan", "_values", "_w", "_wl", "bias", "clip", "decline_at", "features",
                 "formula", "review_at")

    def __init__(
        self,
        bias: float,
        weights: Mapping[str, float],
        review_at: float | None,
        decline_at: float | None,
        clip: float = 20.0,
    ) -> None:
        self.bias = float(bias)
        self.clip = float(clip)
        self.review_at = review_at
        self.decline_at = decline_at
        self.features = tuple(parse_feature(k) for k in weights)
        self._w = np.fromiter(weights.values(), dtype=np.float64, count=len(weights))
        self._wl = [float(w) for w in weights.values()]  # as Python floats, for explanations
        self._keys = [f.key for f in self.features]
        kinds = {"raw": _RAW, "log1p": _LOG1P, "eq": _EQ}
        self._plan = tuple((f.namespace, f.field, kinds[f.transform], f.equals)
                           for f in self.features)
        #: What score() depends on: models with equal formulas give the same score to every payment
        #: (a shadow ruleset that only changes rules or thresholds reuses the live score).
        self.formula = (self.bias, self.clip, self._plan, tuple(self._wl))
        self._values = _compile_values(self._plan, self.clip)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, object] | None) -> ScoreModel:
        """Build from a ruleset's ``score`` section; None gives a model that never acts."""
        if raw is None:
            return cls(bias=-50.0, weights={}, review_at=None, decline_at=None)
        if not isinstance(raw, Mapping):
            raise ScoreConfigError("must be a mapping")
        unknown = set(raw) - {"bias", "weights", "review_at", "decline_at", "clip"}
        if unknown:
            raise ScoreConfigError(f"unknown key(s) {sorted(unknown)}")
        bias = _number(raw.get("bias", 0.0), "bias")
        clip = _number(raw.get("clip", 20.0), "clip")
        if clip <= 0:
            raise ScoreConfigError("clip must be > 0")
        weights_raw = raw.get("weights", {})
        if not isinstance(weights_raw, Mapping):
            raise ScoreConfigError("weights must be a mapping of feature -> number")
        weights = {str(k): _number(v, f"weight {k!r}") for k, v in weights_raw.items()}
        thresholds: dict[str, float | None] = {}
        for name in ("review_at", "decline_at"):
            value = raw.get(name)
            if value is not None:
                value = _number(value, name)
                if not 0.0 < value <= 1.0:
                    raise ScoreConfigError(f"{name} must be in (0, 1], got {value}")
            thresholds[name] = value
        review_at, decline_at = thresholds["review_at"], thresholds["decline_at"]
        if review_at is not None and decline_at is not None and review_at > decline_at:
            raise ScoreConfigError(f"review_at {review_at} is above decline_at {decline_at}")
        return cls(bias, weights, review_at, decline_at, clip)

    def values(self, ctx: Mapping[str, Mapping[str, object]]) -> list[float]:
        """The transformed, clipped features of one payment, in weight order.

        Missing or non-numeric values count as 0, NaN too (it would make the score NaN
        and silently approve).
        """
        return self._values(ctx)

    def vector(self, ctx: Mapping[str, Mapping[str, object]]) -> np.ndarray:
        """The feature vector of one payment as a numpy array (see values())."""
        return np.array(self.values(ctx), dtype=np.float64)

    def score(self, ctx: Mapping[str, Mapping[str, object]]) -> float:
        """The payment's risk score in [0, 1]."""
        return self.score_of(self.values(ctx)) if self._plan else self.score_of(())

    def score_of(self, values: list[float] | tuple[()]) -> float:
        """The score of feature values as returned by values() (explanations reuse them)."""
        z = self.bias
        if self._plan:
            z += float(np.dot(self._w, np.array(values, dtype=np.float64)))
        # Two branches so exp() never overflows for large |z|.
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    def contributions(self, values: list[float]) -> list[tuple[str, float, float]]:
        """(weight key, value, weight x value) per feature, in weight order."""
        return [(k, x, w * x) for k, x, w in zip(self._keys, values, self._wl, strict=True)]

    def action(self, score: float) -> int:
        """0 approve, 1 review, 2 decline, from the thresholds alone."""
        if self.decline_at is not None and score >= self.decline_at:
            return 2
        if self.review_at is not None and score >= self.review_at:
            return 1
        return 0


def _compile_values(
    plan: tuple[tuple[str, str, int, str | None], ...], clip: float
) -> Callable[..., list[float]]:
    """ScoreModel.values for one plan, as straight-line Python: one feature after another with no loop,
    and each namespace looked up once (a third of the cost of looping over the plan per payment)."""
    lines = ["def values(ctx):"]
    namespaces = {ns: f"ns{i}" for i, ns in enumerate(dict.fromkeys(p[0] for p in plan))}
    for ns, local in namespaces.items():
        lines.append(f"    {local} = ctx.get({ns!r})")
    for i, (ns, field, kind, equals) in enumerate(plan):
        read = f"({namespaces[ns]}.get({field!r}) if {namespaces[ns]} is not None else None)"
        if kind == _EQ:
            lines.append(f"    x{i} = 1.0 if {read} == {equals!r} else 0.0")
            continue
        lines += [
            "    try:",
            f"        x = float({read})",
            "    except (TypeError, ValueError):",
            "        x = 0.0",
            "    if x != x:",
            "        x = 0.0",
        ]
        if kind == _LOG1P:
            lines += ["    else:", "        x = copysign(log1p(abs(x)), x)"]
        # Clipping here is cheaper than np.clip on a vector this small.
        lines.append(f"    x{i} = hi if x > hi else lo if x < lo else x")
    lines.append(f"    return [{', '.join(f'x{i}' for i in range(len(plan)))}]")
    scope: dict[str, object] = {"hi": clip, "lo": -clip, "copysign": math.copysign, "log1p": math.log1p}
    # Only reprs of names and literals validated at load (parse_feature) go into the source.
    exec(compile("\n".join(lines), "<streamrisk score>", "exec"), scope)
    return scope["values"]  # type: ignore[return-value]
