"""`streamrisk train RECORDING`: export each payment's features as they were when it was decided, label it
from the stream's chargebacks (and late repayments), fit a logistic score on the earlier part, compare it
with the hand-set one on the later part, and write a ruleset that the existing commands backtest, publish
as a shadow and make live."""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..settings import Settings

DEFAULT_OUT = Path("learned.yaml")
DEFAULT_PD_OUT = Path("pd_policy.yaml")


def add_parser(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser(
        "train", help="fit the risk score on a recording, labelled by its own chargebacks",
        description="Replay a recording through the worker's core (as `streamrisk backtest` does), export "
        "each payment's score features point in time, label it from the stream (a chargeback with reason "
        "fraud or unauthorized within the horizon), fit an L2-regularised logistic regression on the "
        "earlier part and compare it with the hand-set score on the later part. Writes a ruleset: the "
        "current rules with the learned score.",
    )
    t.add_argument("recording", type=Path, help="JSON Lines recording (streamrisk record)")
    t.add_argument("--out", type=Path, help=f"ruleset to write (default {DEFAULT_OUT}; with --pd, the credit "
                   f"policy, default {DEFAULT_PD_OUT})")
    t.add_argument("--pd", action="store_true",
                   help="fit the credit policy's PD weights (its pricing: section) instead of the score: "
                   "each account's credit features at each point it is priced (opened, reviewed, adjusted), "
                   "labelled by a default within --horizon-days (a repayment later than --grace-days past "
                   "due, or a credit_line payment charged back for fraud); writes the policy with them")
    t.add_argument("--policy", type=Path, metavar="FILE",
                   help="with --pd: the credit policy replayed with, compared with and written with the "
                   "fitted weights (default: STREAMRISK_CREDIT_POLICY, else the shipped one)")
    t.add_argument("--current", type=Path, metavar="FILE",
                   help="ruleset whose rules are kept and whose score is compared with (default: "
                   "STREAMRISK_RULES, else the shipped one)")
    t.add_argument("--horizon-days", type=float, default=30.0,
                   help="a chargeback labels a payment when it comes within this many days (default 30)")
    t.add_argument("--grace-days", type=float, default=3.0,
                   help="a repayment later than its due date by more than this is a default (default 3)")
    t.add_argument("--target", choices=("fraud", "default", "either"), default="fraud",
                   help="what the score learns: fraud (chargebacks), default (late repayments) or either "
                   "(default fraud)")
    t.add_argument("--label-scope", choices=("payment", "device"), default="device",
                   help="payment: only the payment a fraud chargeback names is fraud; device: also the "
                   "user's payments from the same device within the horizon (default device)")
    t.add_argument("--split", type=float, default=0.7,
                   help="share of payments, earliest first, to train on; the rest is held out (default 0.7)")
    t.add_argument("--mature-days", type=float, default=0.0,
                   help="leave out the payments of the recording's last N days, whose chargebacks may not "
                   "have come yet, from training and measuring (default 0)")
    t.add_argument("--l2", type=float, default=1.0, help="L2 penalty on standardised weights (default 1)")
    t.add_argument("--decline-precision", type=float, default=0.99,
                   help="decline_at is the lowest score whose declines in the training part reach this "
                   "precision (default 0.99)")
    t.add_argument("--review-precision", type=float, default=0.8,
                   help="review_at likewise (default 0.8)")
    t.add_argument("--plot", type=Path, metavar="PNG", help="write a calibration plot here")
    t.add_argument("--labels", type=Path, metavar="FILE",
                   help="the load generator's labels.jsonl: only to report quality per scenario (never "
                   "trained on)")
    t.add_argument("--json", type=Path, help="write the metrics as JSON here")
    t.add_argument("--batch-max", type=int, default=500, help="records per batch (default 500)")


def run(args: argparse.Namespace, settings: Settings) -> int:

    from ..recording.jsonl import RecordingError, check_recording, read_recording
    from ..rules import RulesetError, load_ruleset
    from ..rules.control import initial_ruleset
    from .export import export_features
    from .train import TrainConfig, TrainError, train

    for problem in _bad_options(args):
        print(f"streamrisk train: {problem}", file=sys.stderr)
        return 2
    if args.pd:
        return _run_pd(args, settings)
    if args.policy is not None:
        print("streamrisk train: --policy goes with --pd", file=sys.stderr)
        return 2
    if args.out is None:
        args.out = DEFAULT_OUT
    try:
        current = load_ruleset(args.current) if args.current else initial_ruleset(settings.rules_path)
        check_recording(args.recording)
        digest = _sha256(args.recording)
        export = export_features(read_recording(args.recording), settings, current,
                                 batch_max=args.batch_max)
        result = train(export, current, TrainConfig.from_args(args), digest)
    except (RulesetError, RecordingError, TrainError) as exc:
        return _failed(exc)
    if args.labels is not None:
        from .train import scenario_quality

        result.metrics["per_scenario"] = scenario_quality(args.labels, export, result)
    _write(args.out, result.ruleset_mapping())
    loaded = load_ruleset(args.out)  # what a worker would load: it must score as trained
    result.check_scores(loaded)
    print(result.format(args.recording))
    print(f"wrote ruleset {loaded.version!r} to {args.out}")
    from .plot import calibration_plot

    return _plot_and_metrics(args, result, calibration_plot)


def _run_pd(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses
    from importlib import resources

    import yaml

    from ..credit.policy import PolicyError, load_policy
    from ..recording.jsonl import RecordingError, check_recording, read_recording
    from ..rules import RulesetError, load_ruleset
    from ..rules.control import initial_ruleset
    from .pd import check_pd, export_pd_points, train_pd
    from .train import TrainError

    out = args.out or DEFAULT_PD_OUT
    path = args.policy or settings.credit_policy_path
    try:
        if path is not None:
            base_raw = yaml.safe_load(Path(path).read_text("utf-8"))
            base = load_policy(path)
        else:
            text = resources.files("streamrisk.credit").joinpath("default_policy.yaml").read_text("utf-8")
            base_raw = yaml.safe_load(text)
            base = load_policy(base_raw)
        current = load_ruleset(args.current) if args.current else initial_ruleset(settings.rules_path)
        check_recording(args.recording)
        digest = _sha256(args.recording)
        replay = dataclasses.replace(settings, credit_policy_path=Path(path) if path else None)
        export = export_pd_points(read_recording(args.recording), replay, current, batch_max=args.batch_max)
        result = train_pd(export, base, digest, horizon_days=args.horizon_days, grace_days=args.grace_days,
                          split=args.split, mature_days=args.mature_days, l2=args.l2)
        policy = dict(base_raw)
        from ..credit.pricing import DEFAULT_PRICING

        policy["pricing"] = result.pricing_section(dict(base_raw.get("pricing") or DEFAULT_PRICING))
        policy["version"] = f"{base.version}+pd-{digest[:12]}"
        _write(out, policy)
        loaded = load_policy(out)  # what a worker would load: it must price as fitted
        check_pd(result, loaded, export)
    except (OSError, yaml.YAMLError, PolicyError, RulesetError, RecordingError, TrainError) as exc:
        return _failed(exc)
    print(f"PD fitted on {args.recording} (sha256 {digest[:12]}...), base policy {base.version}")
    print(result.format())
    print(f"wrote credit policy {loaded.version!r} to {out}")
    from .plot import pd_calibration_plot

    return _plot_and_metrics(args, result, pd_calibration_plot)


def _write(path: Path, mapping: dict[str, Any]) -> None:
    """A ruleset or policy file: JSON for a `.json` path, else YAML."""
    import orjson
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        path.write_bytes(orjson.dumps(mapping, option=orjson.OPT_INDENT_2))
    else:
        path.write_text(yaml.safe_dump(mapping, sort_keys=False, width=110), encoding="utf-8")


def _plot_and_metrics(args: argparse.Namespace, result: Any, plot: Callable[[Any, Path], Path]) -> int:
    """`--plot PNG` and `--json FILE` of either kind of training."""
    import orjson

    if args.plot is not None:
        plot(result, args.plot)
        print(f"wrote the calibration plot to {args.plot}")
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(result.metrics, option=orjson.OPT_INDENT_2))
    return 0


def _failed(exc: Exception) -> int:
    """Say why training stopped (the message names the file and the problem); exit code 1."""
    import yaml

    from ..rules import RulesetError

    what = ("ruleset not loaded: " if isinstance(exc, RulesetError)
            else "credit policy not read: " if isinstance(exc, OSError | yaml.YAMLError) else "")
    print(f"streamrisk train: {what}{exc}", file=sys.stderr)
    return 1


def _bad_options(args: argparse.Namespace) -> list[str]:
    checks = [
        (0.0 < args.split < 1.0, f"--split must be within (0, 1), got {args.split}"),
        (0.0 < args.decline_precision <= 1.0, f"--decline-precision must be within (0, 1], got "
         f"{args.decline_precision}"),
        (0.0 < args.review_precision <= 1.0, f"--review-precision must be within (0, 1], got "
         f"{args.review_precision}"),
        (args.horizon_days > 0, f"--horizon-days must be > 0, got {args.horizon_days}"),
        (args.grace_days >= 0 and args.mature_days >= 0 and args.l2 >= 0,
         "--grace-days, --mature-days and --l2 must be >= 0"),
    ]
    return [message for ok, message in checks if not ok]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()

