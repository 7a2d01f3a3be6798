"""The credit policy: one versioned file (YAML or JSON), validated all-or-nothing like a ruleset.

Amounts in the file are in the currency's major unit and become integer minor units here; days
become milliseconds. A broken file raises PolicyError naming every problem, e.g.
"credit policy policy.yaml: user.floor (900.0) must not exceed user.ceiling (500.0)".
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..core.events import to_minor
from ..settings import DAY_MS
from .pricing import DEFAULT_PRICING, MERCHANT_FEATURES, USER_FEATURES, Model, Pricing

SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2}
# A policy's severity threshold may also be "never": no alert reaches it (the static-limit policy).
NEVER_RANK = len(SEVERITY_RANK)


class PolicyError(ValueError):
    """A credit policy that cannot be used; the message lists every problem and the file."""


@dataclass(frozen=True, slots=True)
class Segment:
    match: str  # a glob on user_id, e.g. "vip-*"
    initial_limit: int


@dataclass(frozen=True, slots=True)
class UserPolicy:
    initial_limit: int
    segments: tuple[Segment, ...]
    floor: int
    ceiling: int
    max_raise_pct: int
    max_cut_pct: int
    review_period_ms: int
    lookback_ms: int
    raise_pct: int
    raise_min_on_time: int
    raise_max_utilization: float
    cooldown_ms: int
    cut_late_repayment_pct: int  # at once, at the repayment found past due
    cut_chargeback_pct: int  # at the next review, for a service-dispute chargeback
    cut_alert_pct: int
    cut_alert_rank: int  # severity rank (SEVERITY_RANK)
    freeze_alert_rank: int
    ignore_alert_reasons: frozenset[str]
    freeze_ms: int
    reversal_window_ms: int
    max_tracked_draws: int
    # Chargeback reasons that cut and freeze at once (the contract's fraud reasons); any other reason is
    # a service dispute, a cut signal for the next review.
    freeze_chargeback_reasons: frozenset[str] = frozenset({"fraud", "unauthorized"})
    # The most an account without an on-time repayment in the look-back (a new one, or one that has not
    # repaid on time for that long) may owe, when below its limit; None: no such cap.
    unproven_limit: int | None = None

    def initial_limit_for(self, user_id: str) -> int:
        for s in self.segments:
            if fnmatch.fnmatchcase(user_id, s.match):
                return s.initial_limit
        return self.initial_limit


@dataclass(frozen=True, slots=True)
class MerchantPolicy:
    advance_rate_bp: int  # basis points: 8000 = 80 %
    min_advance_rate_bp: int
    late_repayment_step_bp: int
    on_time_repayment_step_bp: int
    refund_penalty: float
    chargeback_penalty: float
    sales_decline_floor: float
    band_pct: int
    band_min: int
    fraud_alert_rank: int
    fraud_cut_pct: int
    fraud_hold_ms: int
    # A chargeback spike: at least `chargeback_spike_count` chargebacks within `chargeback_spike_ms`,
    # and at least `chargeback_spike_factor` x the merchant's 30-day mean for a span that long, cut
    # the line by `chargeback_spike_cut_pct` at once and hold it for `chargeback_spike_hold_ms`.
    chargeback_spike_count: int = 5
    chargeback_spike_ms: int = DAY_MS
    chargeback_spike_factor: float = 3.0
    chargeback_spike_cut_pct: int = 50
    chargeback_spike_hold_ms: int = 14 * DAY_MS


@dataclass(frozen=True, slots=True)
class CreditPolicy:
    version: str
    user: UserPolicy
    merchant: MerchantPolicy
    # Policies built in code before pricing existed get the shipped pricing.
    pricing: Pricing = field(default_factory=lambda: _pricing(DEFAULT_PRICING, []))


class _Reader:
    """Reads one section's keys, collecting problems instead of stopping at the first."""

    def __init__(self, section: str, raw: Any, problems: list[str]) -> None:
        self.section = section
        self.problems = problems
        self.raw: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        if not isinstance(raw, Mapping):
            problems.append(f"{section} must be a mapping")
        self.used: set[str] = set()
        # Keys a file may leave out (added after files were written), with the value they then take.
        self.defaults: dict[str, Any] = {}

    def _get(self, key: str) -> Any:
        self.used.add(key)
        if key not in self.raw:
            if key in self.defaults:
                return self.defaults[key]
            self.problems.append(f"{self.section}.{key} is missing")
        return self.raw.get(key)

    def number(self, key: str, lo: float, hi: float, integer: bool = False) -> float:
        v = self._get(key)
        if v is None:
            return lo
        if isinstance(v, bool) or not isinstance(v, int | float) or (integer and not float(v).is_integer()):
            kind = "a whole number" if integer else "a number"
            self.problems.append(f"{self.section}.{key} must be {kind} (got {v!r})")
            return lo
        if not lo <= v <= hi:
            self.problems.append(f"{self.section}.{key} must be within [{lo}, {hi}] (got {v!r})")
            return lo
        return int(v) if integer else float(v)

    def money(self, key: str) -> int:
        return to_minor(self.number(key, 0.0, 1e12))

    def days(self, key: str, lo: float = 0.0) -> int:
        return int(self.number(key, lo, 3650.0) * DAY_MS)

    def pct(self, key: str, hi: int = 100) -> int:
        return int(self.number(key, 0, hi, integer=True))

    def hours(self, key: str, lo: float = 0.0) -> int:
        return int(self.number(key, lo, 3650.0 * 24) * DAY_MS / 24)

    def strings(self, key: str) -> frozenset[str]:
        v = self._get(key)
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            self.problems.append(f"{self.section}.{key} must be a list of non-empty strings (got {v!r})")
            return frozenset()
        return frozenset(v)

    def severity(self, key: str) -> int:
        v = self._get(key)
        if v == "never":
            return NEVER_RANK
        if v not in SEVERITY_RANK:
            self.problems.append(f"{self.section}.{key} must be one of low, medium, high, never (got {v!r})")
            return SEVERITY_RANK["high"]
        return SEVERITY_RANK[v]

    def done(self) -> None:
        unknown = sorted(set(map(str, self.raw)) - self.used)
        if unknown:
            self.problems.append(f"{self.section}: unknown key(s) {unknown}")


def _segments(raw: Any, problems: list[str]) -> tuple[Segment, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append("user.segments must be a list of {match, initial_limit}")
        return ()
    out = []
    for i, s in enumerate(raw, start=1):
        r = _Reader(f"user.segments[{i}]", s, problems)
        match = r._get("match")
        if not isinstance(match, str) or not match:
            problems.append(f"user.segments[{i}].match must be a non-empty glob on user_id (got {match!r})")
        limit = r.money("initial_limit")
        r.done()
        out.append(Segment(str(match), limit))
    return tuple(out)


def _user(raw: Any, problems: list[str]) -> UserPolicy:
    r = _Reader("user", raw, problems)
    r.defaults = {"freeze_chargeback_reasons": ["fraud", "unauthorized"], "unproven_limit": None}
    r.used.add("segments")
    ignore = r._get("ignore_alert_reasons") or []
    if not isinstance(ignore, list) or not all(isinstance(x, str) for x in ignore):
        problems.append(f"user.ignore_alert_reasons must be a list of reason codes (got {ignore!r})")
        ignore = []
    p = UserPolicy(
        initial_limit=r.money("initial_limit"),
        segments=_segments(r.raw.get("segments"), problems),
        floor=r.money("floor"),
        ceiling=r.money("ceiling"),
        max_raise_pct=r.pct("max_raise_pct", 1000),
        max_cut_pct=r.pct("max_cut_pct"),
        review_period_ms=r.days("review_period_days", 1 / 24),
        lookback_ms=r.days("lookback_days", 1 / 24),
        raise_pct=r.pct("raise_pct", 1000),
        raise_min_on_time=int(r.number("raise_min_on_time", 0, 1000, integer=True)),
        raise_max_utilization=r.number("raise_max_utilization", 0.0, 1.0),
        cooldown_ms=r.days("cooldown_days"),
        cut_late_repayment_pct=r.pct("cut_late_repayment_pct"),
        cut_chargeback_pct=r.pct("cut_chargeback_pct"),
        cut_alert_pct=r.pct("cut_alert_pct"),
        cut_alert_rank=r.severity("cut_alert_severity"),
        freeze_alert_rank=r.severity("freeze_alert_severity"),
        ignore_alert_reasons=frozenset(ignore),
        freeze_ms=r.days("freeze_days"),
        reversal_window_ms=r.days("reversal_window_days"),
        max_tracked_draws=int(r.number("max_tracked_draws", 1, 100_000, integer=True)),
        freeze_chargeback_reasons=r.strings("freeze_chargeback_reasons"),
        unproven_limit=None if r._get("unproven_limit") is None else r.money("unproven_limit"),
    )
    r.done()
    if p.floor > p.ceiling:
        problems.append(f"user.floor ({p.floor / 100}) must not exceed user.ceiling ({p.ceiling / 100})")
    for name, limit in [("initial_limit", p.initial_limit)] + [
        (f"segments {s.match!r} initial_limit", s.initial_limit) for s in p.segments
    ]:
        if not p.floor <= limit <= p.ceiling:
            problems.append(f"user.{name} ({limit / 100}) must lie within floor and ceiling")
    if p.raise_pct > p.max_raise_pct:
        problems.append(f"user.raise_pct ({p.raise_pct}) exceeds user.max_raise_pct ({p.max_raise_pct})")
    return p


def _merchant(raw: Any, problems: list[str]) -> MerchantPolicy:
    r = _Reader("merchant", raw, problems)
    r.defaults = {"chargeback_spike_count": 5, "chargeback_spike_hours": 24, "chargeback_spike_factor": 3.0,
                  "chargeback_spike_cut_pct": 50, "chargeback_spike_hold_days": 14}
    p = MerchantPolicy(
        advance_rate_bp=r.pct("advance_rate_pct") * 100,
        min_advance_rate_bp=r.pct("min_advance_rate_pct") * 100,
        late_repayment_step_bp=r.pct("late_repayment_step_pct") * 100,
        on_time_repayment_step_bp=r.pct("on_time_repayment_step_pct") * 100,
        refund_penalty=r.number("refund_penalty", 0.0, 1000.0),
        chargeback_penalty=r.number("chargeback_penalty", 0.0, 1000.0),
        sales_decline_floor=r.number("sales_decline_floor", 0.0, 1.0),
        band_pct=r.pct("band_pct"),
        band_min=r.money("band_min"),
        fraud_alert_rank=r.severity("fraud_alert_severity"),
        fraud_cut_pct=r.pct("fraud_cut_pct"),
        fraud_hold_ms=r.days("fraud_hold_days"),
        chargeback_spike_count=int(r.number("chargeback_spike_count", 1, 1_000_000, integer=True)),
        chargeback_spike_ms=r.hours("chargeback_spike_hours", 1 / 60),
        chargeback_spike_factor=r.number("chargeback_spike_factor", 0.0, 1000.0),
        chargeback_spike_cut_pct=r.pct("chargeback_spike_cut_pct"),
        chargeback_spike_hold_ms=r.days("chargeback_spike_hold_days"),
    )
    r.done()
    if p.min_advance_rate_bp > p.advance_rate_bp:
        problems.append("merchant.min_advance_rate_pct must not exceed merchant.advance_rate_pct")
    return p


def _model(section: str, raw: Any, features: Mapping[str, int], problems: list[str]) -> Model:
    r = _Reader(section, raw, problems)
    intercept = r.number("intercept", -50.0, 50.0)
    weights = r._get("weights")
    out: list[tuple[str, float]] = []
    if not isinstance(weights, Mapping):
        problems.append(f"{section}.weights must be a mapping of feature to weight (got {weights!r})")
        weights = {}
    w = _Reader(f"{section}.weights", weights, problems)
    for name, sign in features.items():
        if name not in weights:
            continue
        v = w.number(name, -1000.0, 1000.0)
        if v * sign < 0:
            way = "raise" if sign < 0 else "lower"
            problems.append(f"{section}.weights.{name} must be {'<= 0' if sign < 0 else '>= 0'}: more "
                            f"{name} must not {way} the PD (got {v!r})")
        out.append((name, v))
    w.done()
    r.done()
    return Model(intercept, tuple(out))


def _bands(raw: Any, problems: list[str]) -> tuple[tuple[float, ...], tuple[int, ...]]:
    if not isinstance(raw, list) or not raw:
        problems.append("pricing.bands must be a non-empty list of {max_pd, price_bp}")
        return (1.0,), (0,)
    max_pd: list[float] = []
    price: list[int] = []
    for i, b in enumerate(raw, start=1):
        r = _Reader(f"pricing.bands[{i}]", b, problems)
        hi = r.number("max_pd", 0.0, 1.0)
        bp = int(r.number("price_bp", 0, 100_000, integer=True))
        r.done()
        if max_pd and hi <= max_pd[-1]:
            problems.append(f"pricing.bands[{i}].max_pd ({hi}) must be above the band before ({max_pd[-1]})")
        if price and bp < price[-1]:
            problems.append(f"pricing.bands[{i}].price_bp ({bp}) must not be below the band before "
                            f"({price[-1]}): a riskier band never costs less")
        max_pd.append(hi)
        price.append(bp)
    if max_pd[-1] != 1.0:
        problems.append(f"pricing.bands: the last band's max_pd must be 1.0 (got {max_pd[-1]})")
    return tuple(max_pd), tuple(price)


def _pricing(raw: Any, problems: list[str]) -> Pricing:
    r = _Reader("pricing", raw, problems)
    r.defaults = {"fitted": ""}
    fitted = r._get("fitted")
    if not isinstance(fitted, str):
        problems.append(f"pricing.fitted must be a string (got {fitted!r})")
        fitted = ""
    user = _model("pricing.user", r._get("user"), USER_FEATURES, problems)
    merchant = _model("pricing.merchant", r._get("merchant"), MERCHANT_FEATURES, problems)
    bands = _bands(r._get("bands"), problems)
    p = Pricing(user=user, merchant=merchant, band_max_pd=bands[0], band_price_bp=bands[1],
                lgd=r.number("lgd", 0.0, 1.0),
                horizon_days=int(r.number("horizon_days", 1, 3650, integer=True)), fitted=fitted)
    r.done()
    return p


def load_policy(source: Path | str | Mapping[str, Any]) -> CreditPolicy:
    """A validated policy from a YAML/JSON file or a parsed mapping; PolicyError lists every problem."""
    where = "" if isinstance(source, Mapping) else f" {source}"
    if isinstance(source, Mapping):
        raw: Any = source
    else:
        try:
            raw = yaml.safe_load(Path(source).read_text("utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"credit policy{where}: cannot read it ({exc})") from None
    if not isinstance(raw, Mapping):
        raise PolicyError(f"credit policy{where}: must be a mapping with version, user and merchant")
    problems: list[str] = []
    version = raw.get("version")
    if not isinstance(version, str) or not version.strip():
        problems.append("version must be a non-empty string (quote dates in YAML)")
    unknown = sorted(set(map(str, raw)) - {"version", "description", "user", "merchant", "pricing"})
    if unknown:
        problems.append(f"unknown top-level key(s) {unknown}")
    user = _user(raw.get("user"), problems)
    merchant = _merchant(raw.get("merchant"), problems)
    # Optional: a file written before pricing existed gets the shipped pricing.
    pricing = _pricing(raw.get("pricing", DEFAULT_PRICING), problems)
    if problems:
        raise PolicyError(f"credit policy{where}: " + "; ".join(problems))
    return CreditPolicy(str(version), user, merchant, pricing)


def default_policy() -> CreditPolicy:
    """The policy shipped with the package (streamrisk/credit/default_policy.yaml)."""
    return shipped_policy("default_policy.yaml")


def shipped_policy(name: str) -> CreditPolicy:
    """A policy file shipped with the package: default_policy.yaml, or static_policy.yaml (limits set at
    opening and never moved: the baseline the adaptive policy is measured against)."""
    text = resources.files("streamrisk.credit").joinpath(name).read_text("utf-8")
    return load_policy(yaml.safe_load(text))
