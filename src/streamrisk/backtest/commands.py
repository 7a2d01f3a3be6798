"""The `backtest` and `shadow-report` commands (parsers and runners; cli.py dispatches to them)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..settings import Settings


def add_parsers(sub: argparse._SubParsersAction, common: object) -> None:
    """`common(parser)` adds --bootstrap and --topic-prefix."""
    b = sub.add_parser(
        "backtest", help="a candidate ruleset over a recording, offline, beside the current one",
        description="Run a recording (streamrisk record) through the worker's core with the current "
        "ruleset and a candidate beside it, and print how they differ. No broker needed.",
    )
    b.add_argument("recording", type=Path, help="JSON Lines recording")
    # dest is not "rules": that attribute is the worker's start-up ruleset (STREAMRISK_RULES).
    b.add_argument("--rules", dest="candidate", type=Path, required=True, metavar="FILE",
                   help="candidate ruleset (YAML or JSON)")
    b.add_argument("--current", type=Path, metavar="FILE",
                   help="ruleset in force at the start (default: STREAMRISK_RULES, else the shipped "
                   "one); risk-rules records in the recording then apply to it as they did live")
    b.add_argument("--policy", type=Path, metavar="FILE",
                   help="candidate credit policy (needs the credit package)")
    b.add_argument("--grace-days", type=float, default=14.0, metavar="DAYS",
                   help="credit losses: a balance with a draw unpaid for longer than this at the end of "
                   "the recording has defaulted (default 14)")
    b.add_argument("--changes", type=Path, help="write every changed payment here (JSON Lines)")
    b.add_argument("--json", type=Path, help="write the report as JSON here")
    b.add_argument("--show", type=int, default=20, help="changed payments to print (default 20)")
    b.add_argument("--batch-max", type=int, default=500, help="records per batch (default 500)")

    s = sub.add_parser(
        "shadow-report", help="how the shadow ruleset's decisions differ from the live ones",
        description="Read the live decisions, the shadow ruleset's would-be decisions and the "
        "chargebacks from the broker and compare them over a period of payment time.",
    )
    common(s)  # type: ignore[operator]
    s.add_argument("--app-id", help="application id of the workers (default streamrisk)")
    s.add_argument("--since", help="only payments of the last DURATION (e.g. 30m, 24h, 7d)")
    s.add_argument("--show", type=int, default=20, help="changed payments to print (default 20)")
    s.add_argument("--json", type=Path, help="write the report as JSON here")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "backtest":
        return _backtest(args, settings)
    from .shadow_report import run_shadow_report

    return run_shadow_report(args, settings)


def _backtest(args: argparse.Namespace, settings: Settings) -> int:
    if not args.grace_days >= 0:
        print(f"streamrisk backtest: --grace-days must be 0 or more (got {args.grace_days:g})",
              file=sys.stderr)
        return 2
    # Imported here: the rules engine takes a while to import, and other commands do not need it.
    import orjson

    from ..recording.jsonl import RecordingError, check_recording, read_recording
    from ..rules import RulesetError, load_ruleset
    from ..rules.control import initial_ruleset
    from ..settings import DAY_MS
    from .losses import CreditLedger, format_losses
    from .offline import run_backtest
    from .policy import PolicyError, credit_built, policy_hook
    from .report import format_report, report_json

    try:
        candidate = load_ruleset(args.candidate)
        current = load_ruleset(args.current) if args.current else initial_ruleset(settings.rules_path)
        configure, note = policy_hook(args.policy)
        check_recording(args.recording)
        # One processor with the candidate as its shadow, unless state can depend on decisions.
        shared = configure is None and not credit_built()
        ledger = CreditLedger(grace_ms=int(args.grace_days * DAY_MS)) if credit_built() else None
        result = run_backtest(read_recording(args.recording), settings, current, candidate,
                              configure=configure, shared=shared, batch_max=args.batch_max, ledger=ledger)
    except RulesetError as exc:
        print(f"streamrisk backtest: ruleset not loaded: {exc}", file=sys.stderr)
        return 1
    except (RecordingError, PolicyError) as exc:
        print(f"streamrisk backtest: {exc}", file=sys.stderr)
        return 1
    c = result.comparison
    print(f"backtest of {args.recording}: {result.records} records, {result.span_s / 3600:.2f} h of "
          f"record time")
    if result.ignored:
        skipped = ", ".join(f"{t}={n}" for t, n in sorted(result.ignored.items()))
        print(f"  not worker input, skipped: {skipped}")
    if note:
        print(f"  {note}")
    if len(c.a.versions) > 1:  # risk-rules records of the recording were applied, in order
        print(f"  current side decided with rulesets {' then '.join(c.a.versions)} (from the recording)")
        c.a.version = list(c.a.versions)[-1]
    print(format_report(c, show_changes=args.show))
    if ledger is not None and ledger.payments:
        print(format_losses(ledger))
    how = "one processor, the candidate as its shadow" if result.shared else "one processor per ruleset"
    print(f"ran both rulesets ({how}) in {result.elapsed_s:.1f} s: "
          f"{result.speedup:.0f}x faster than real time")
    if args.changes:
        with args.changes.open("wb") as fh:
            for ch in c.changes:
                fh.write(orjson.dumps(ch.as_dict(ch.event_id in c.charged_back)) + b"\n")
        print(f"wrote {c.changed} changed payments to {args.changes}")
    if args.json:
        body = report_json(c)
        body.update(records=result.records, span_s=result.span_s, elapsed_s=result.elapsed_s,
                    speedup=result.speedup, note=note)
        if ledger is not None and ledger.payments:
            body["credit_losses"] = {"grace_days": args.grace_days, "current": ledger.losses(0).as_dict(),
                                     "candidate": ledger.losses(1).as_dict()}
        args.json.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
    return 0
