"""`streamrisk train RECORDING`: export each payment's features as they were when it was decided, label it
from the stream's chargebacks (and late repayments), fit a logistic score on the earlier part, compare it
with the hand-set one on the later part, and write a ruleset that the existing commands backtest, publish
as a shadow and make live."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from ..settings import Settings

DEFAULT_OUT = Path("learned.yaml")


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
    t.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"ruleset to write (default {DEFAULT_OUT})")
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
    import orjson
    import yaml

    from ..recording.jsonl import RecordingError, check_recording, read_recording
    from ..rules import RulesetError, load_ruleset
    from ..rules.control import initial_ruleset
    from .export import export_features
    from .train import TrainConfig, TrainError, train

    for problem in _bad_options(args):
        print(f"streamrisk train: {problem}", file=sys.stderr)
        return 2
    try:
        current = load_ruleset(args.current) if args.current else initial_ruleset(settings.rules_path)
        check_recording(args.recording)
        digest = _sha256(args.recording)
        export = export_features(read_recording(args.recording), settings, current,
                                 batch_max=args.batch_max)
        result = train(export, current, TrainConfig.from_args(args), digest)
    except RulesetError as exc:
        print(f"streamrisk train: ruleset not loaded: {exc}", file=sys.stderr)
        return 1
    except (RecordingError, TrainError) as exc:
        print(f"streamrisk train: {exc}", file=sys.stderr)
        return 1
    if args.labels is not None:
        from .train import scenario_quality

        result.metrics["per_scenario"] = scenario_quality(args.labels, export, result)
    ruleset = result.ruleset_mapping()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.suffix.lower() == ".json":
        args.out.write_bytes(orjson.dumps(ruleset, option=orjson.OPT_INDENT_2))
    else:
        args.out.write_text(yaml.safe_dump(ruleset, sort_keys=False, width=110), encoding="utf-8")
    loaded = load_ruleset(args.out)  # what a worker would load: it must score as trained
    result.check_scores(loaded)
    print(result.format(args.recording))
    print(f"wrote ruleset {loaded.version!r} to {args.out}")
    if args.plot is not None:
        from .plot import calibration_plot

        calibration_plot(result, args.plot)
        print(f"wrote the calibration plot to {args.plot}")
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(result.metrics, option=orjson.OPT_INDENT_2))
    return 0


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

