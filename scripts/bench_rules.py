"""Benchmark the default ruleset per payment: generated Python and the CEL engine vs a plain Python floor, CEL
program layouts, score.
Run: .venv/bin/python scripts/bench_rules.py (best-of-N µs per payment, ratios same run)."""

from __future__ import annotations

import argparse
import math
import random
import time
from collections.abc import Callable
from typing import Any

import cel

from streamrisk.rules import decide, default_ruleset, load_ruleset
from streamrisk.rules.ruleset import Ruleset, flat_variables
from streamrisk.rules.schema import MERCHANT_FIELDS, USER_FIELDS, WINDOWS

Ctx = dict[str, dict[str, Any]]


def make_contexts(n: int, seed: int = 7) -> list[Ctx]:
    """Mostly normal payments with a share of risky ones, so short-circuits vary."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        risky = rng.random() < 0.1
        user: dict[str, Any] = dict.fromkeys(USER_FIELDS, 0.0)
        for i, w in enumerate(WINDOWS):
            c = rng.randint(1, 3) * (i + 1) * (8 if risky else 1)
            user[f"payment_count_{w}"] = c
            user[f"payment_amount_sum_{w}"] = 40.0 * c
            user[f"payment_amount_mean_{w}"] = rng.uniform(2, 80)
            user[f"payment_amount_std_{w}"] = rng.uniform(0, 20)
            user[f"payment_amount_max_{w}"] = rng.uniform(50, 200)
            user[f"distinct_merchants_{w}"] = min(c, rng.randint(1, 6))
            user[f"distinct_devices_{w}"] = rng.randint(1, 5 if risky else 2)
        user.update(
            chargeback_count_30d=rng.choice([0, 0, 0, 1]) if risky else 0,
            repayment_on_time_rate_30d=rng.random(), amount_zscore_30d=rng.gauss(0, 2),
            new_device=int(rng.random() < 0.1),
            credit_limit=2000.0, credit_available=rng.uniform(0, 2000), credit_utilization=rng.random(),
        )
        merchant: dict[str, Any] = dict.fromkeys(MERCHANT_FIELDS, 0.0)
        for i, w in enumerate(WINDOWS):
            o = 10 ** (i + 1)
            merchant[f"order_count_{w}"] = o
            merchant[f"order_amount_sum_{w}"] = 45.0 * o * (6 if risky and w == "24h" else 1)
            merchant[f"refund_rate_{w}"] = rng.uniform(0, 0.5 if risky else 0.05)
        merchant["chargeback_count_30d"] = rng.randint(0, 5)
        payment = {
            "amount": rng.lognormvariate(3.5, 1.0), "currency": "EUR",
            "method": rng.choice(["card", "wallet", "credit_line"]), "merchant_id": "m",
            "user_id": "u", "device_id": "d", "country": "DE", "ts": 1.7e9,
        }
        out.append({"payment": payment, "user": user, "merchant": merchant})
    return out


def python_rules(rs: Ruleset) -> Callable[[Ctx], list[str]]:
    """The default ruleset hand-written in Python: the floor for any engine."""
    p = {k: float(v) for k, v in rs.params.items()}

    def evaluate(ctx: Ctx) -> list[str]:
        u, m, pay = ctx["user"], ctx["merchant"], ctx["payment"]
        out = []
        if pay["method"] == "credit_line" and pay["amount"] > u["credit_available"]:
            out.append("over_limit")
        if u["payment_count_5m"] > p["velocity_5m_max"]:
            out.append("velocity_5m")
        if u["payment_count_1h"] > p["velocity_1h_max"]:
            out.append("velocity_1h")
        if (u["payment_count_5m"] >= p["card_testing_min_payments"]
                and u["distinct_merchants_5m"] >= p["card_testing_min_merchants"]
                and u["payment_amount_mean_5m"] <= p["card_testing_max_mean_amount"]):
            out.append("card_testing")
        if (u["new_device"] >= 1 and u["amount_zscore_30d"] >= p["new_device_zscore_min"]
                and pay["amount"] >= p["new_device_min_amount"]):
            out.append("new_device_high_amount")
        if u["distinct_devices_24h"] >= p["device_hopping_min_devices"]:
            out.append("device_hopping")
        if (m["order_count_24h"] >= p["refund_spike_min_orders"]
                and m["refund_rate_24h"] >= p["refund_spike_min_rate"]
                and m["refund_rate_24h"] >= p["refund_spike_factor"] * m["refund_rate_30d"]):
            out.append("merchant_refund_spike")
        if (m["order_amount_sum_24h"] >= p["bust_out_min_amount_24h"]
                and m["order_amount_sum_24h"] * 30.0
                >= p["bust_out_surge_factor"] * m["order_amount_sum_30d"]
                and m["chargeback_count_30d"] >= p["bust_out_min_chargebacks"]):
            out.append("merchant_bust_out")
        if u["chargeback_count_30d"] >= p["user_chargebacks_min"]:
            out.append("user_chargebacks")
        if (u["amount_zscore_30d"] >= p["amount_outlier_zscore"]
                and pay["amount"] >= p["amount_outlier_min_amount"]):
            out.append("amount_outlier")
        return out

    return evaluate


def per_rule(rs: Ruleset) -> Callable[[Ctx], list[bool]]:
    """Same variables, one CEL program per rule sharing one cel.Context per payment."""
    programs, specs = rs._all.programs, rs._all.specs

    def evaluate(ctx: Ctx) -> list[bool]:
        c = cel.Context(flat_variables(specs, ctx))
        return [p.execute(c) for p in programs]

    return evaluate


def lazy_per_rule(rs: Ruleset) -> Callable[[Ctx], list[bool]]:
    """One program per rule, each value converted only when a condition reads it.

    CEL short-circuits `&&`, so normal payments read few fields, but the resolver runs
    on every reference, so the cost grows with the number of rules.
    """
    programs = rs._all.programs
    table = {name: (ns, f, num) for name, ns, f, num in rs._all.specs}

    def evaluate(ctx: Ctx) -> list[bool]:
        def resolve(name: str) -> Any:
            ns, f, num = table[name]
            v = ctx[ns][f]
            return float(v) if num else v

        c = cel.Context()
        c.set_variable_resolver(resolve)
        return [p.execute(c) for p in programs]

    return evaluate


def eager_nested(rs: Ruleset) -> Callable[[Ctx], list[bool]]:
    """The naive layout: the original `user.x` expressions fed the whole nested context."""
    src = "[" + ", ".join(f"({r.when})" for r in rs.rules) + "]"
    for name, value in rs.params.items():
        src = src.replace(f"params.{name}", repr(float(value)))
    program = cel.compile(src)
    return program.execute


def times_ten(rs: Ruleset) -> Ruleset:
    """The same rules repeated ten times under new names: more rules, same fields."""
    raw = rs.to_mapping()
    raw["rules"] = [dict(r, name=f"{r['name']}_{i}") for i in range(10) for r in raw["rules"]]
    return load_ruleset(raw)


def python_score(rs: Ruleset) -> Callable[[Ctx], float]:
    """The score as a pure-Python dot product, to price numpy's per-call overhead."""
    model = rs.score_model
    w = [float(x) for x in model._w]

    def score(ctx: Ctx) -> float:
        z = model.bias + sum([a * b for a, b in zip(w, model.values(ctx), strict=True)])
        return 1.0 / (1.0 + math.exp(-z))

    return score


def bench(fn: Callable[[Ctx], object], ctxs: list[Ctx], repeat: int) -> float:
    """Best-of-`repeat` µs per call over all contexts."""
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        for c in ctxs:
            fn(c)
        best = min(best, time.perf_counter() - t0)
    return best / len(ctxs) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payments", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rs = default_ruleset()
    ctxs = make_contexts(args.payments)

    floor = python_rules(rs)
    fired_py = [floor(c) for c in ctxs]
    cel_only = default_ruleset()
    cel_only._all.fast = None  # the CEL library alone, as before rules/pyeval.py
    fired_cel = [[f.name for f in cel_only.evaluate(c)] for c in ctxs]
    assert fired_py == fired_cel, "CEL and Python floor disagree"
    assert fired_py == [[f.name for f in rs.evaluate(c)] for c in ctxs], "CEL and generated Python disagree"
    fired = sum(map(len, fired_py))

    results: list[tuple[str, float]] = []
    t_floor = bench(floor, ctxs, args.repeat)
    results.append(("rules: plain Python functions (floor)", t_floor))
    t_generated = bench(rs.evaluate, ctxs, args.repeat)
    results.append(("rules: generated Python, CEL subset (chosen)", t_generated))
    t_chosen = bench(cel_only.evaluate, ctxs, args.repeat)
    results.append(("rules: CEL, one program for the ruleset", t_chosen))
    t_per_rule = bench(per_rule(rs), ctxs, args.repeat)
    results.append(("rules: CEL, one program per rule", t_per_rule))
    t_lazy = bench(lazy_per_rule(rs), ctxs, args.repeat)
    results.append(("rules: CEL, per rule, values resolved lazily", t_lazy))
    t_eager = bench(eager_nested(rs), ctxs[:300], max(2, args.repeat // 3))
    results.append(("rules: CEL, whole nested context passed as is", t_eager))
    big = times_ten(rs)
    big._all.fast = None  # the CEL layouts are compared with each other
    t_big = bench(big.evaluate, ctxs[:500], args.repeat)
    results.append(("rules x10 (100 rules): CEL, one program", t_big))
    t_big_per_rule = bench(per_rule(big), ctxs[:500], args.repeat)
    results.append(("rules x10 (100 rules): one program per rule", t_big_per_rule))
    t_big_lazy = bench(lazy_per_rule(big), ctxs[:500], args.repeat)
    results.append(("rules x10 (100 rules): per rule, lazy values", t_big_lazy))
    t_score = bench(rs.score, ctxs, args.repeat)
    results.append(("score: numpy logistic (chosen)", t_score))
    results.append(("score: same in pure Python", bench(python_score(rs), ctxs, args.repeat)))
    t_decide = bench(lambda c: decide(rs, c), ctxs, args.repeat)
    results.append(("decide(): rules + score + verdict", t_decide))

    print(f"default ruleset {rs.version}: {len(rs.rules)} rules reading {len(rs._all.specs)} "
          f"fields, {len(rs.score_model.features)} score features; {len(ctxs)} payments, "
          f"{fired} rule hits; best of {args.repeat}")
    for label, us in results:
        print(f"  {label:<50} {us:8.2f} µs/payment  {us / t_floor:6.1f}x floor")
    print("ratios (same run):")
    print(f"  CEL program / generated Python (chosen)         {t_chosen / t_generated:6.2f}")
    print(f"  CEL program / Python floor                      {t_chosen / t_floor:6.2f}")
    print(f"  one program per rule / one for the ruleset      {t_per_rule / t_chosen:6.2f}")
    print(f"  lazy per rule / one program                     {t_lazy / t_chosen:6.2f}")
    print(f"  whole nested context / one program              {t_eager / t_chosen:6.2f}")
    print(f"  x10 rules: per rule / one program               {t_big_per_rule / t_big:6.2f}")
    print(f"  x10 rules: lazy per rule / one program          {t_big_lazy / t_big:6.2f}")
    print(f"  x10 rules / default rules (one program)         {t_big / t_chosen:6.2f}")
    print(f"  score / chosen rule evaluation                  {t_score / t_generated:6.2f}")
    print(f"  decide() throughput on one core           {1e6 / t_decide:10.0f} payments/s")


if __name__ == "__main__":
    main()
