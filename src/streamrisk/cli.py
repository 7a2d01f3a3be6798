"""`streamrisk ...`: broker, worker, produce, loadtest, record, replay, backtest, train, publish-rules,
shadow-report and demo."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from .rules.ruleset import RulesetError
from .runtime.preflight import UserError, check_port, wait_for_broker
from .settings import Settings, SettingsError


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        bootstrap=getattr(args, "bootstrap", None),
        topic_prefix=getattr(args, "topic_prefix", None),
        partitions=getattr(args, "partitions", None),
        web_host=getattr(args, "web_host", None),
        web_port=getattr(args, "web_port", None),
        app_id=getattr(args, "app_id", None),
        data_dir=Path(args.data_dir) if getattr(args, "data_dir", None) else None,
        rules_path=Path(args.rules) if getattr(args, "rules", None) else None,
        log_level=getattr(args, "log_level", None),
    )


def _common(p: argparse.ArgumentParser, *, worker: bool = False) -> None:
    p.add_argument("--bootstrap", help="host:port[,host:port] (env STREAMRISK_BOOTSTRAP)")
    p.add_argument("--topic-prefix", help="prefix of every topic (env STREAMRISK_TOPIC_PREFIX)")
    if worker:
        p.add_argument("--partitions", type=int, help="partitions of created topics (default 4)")
        p.add_argument("--web-host", help="HTTP API bind address (default 127.0.0.1)")
        p.add_argument("--web-port", type=int, help="HTTP API port (default 6066)")
        p.add_argument("--app-id", help="application id (default streamrisk); the consumer group is "
                       "the topic prefix and the app id")
        p.add_argument("--data-dir", help="local state folder (env STREAMRISK_DATA_DIR)")
        p.add_argument("--rules", help="rules file (env STREAMRISK_RULES)")
    _log_level(p)


def _log_level(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log-level", help="debug, info, warning (default info); debug also shows tracebacks of errors"
    )


def _traffic_args(p: argparse.ArgumentParser, rate: float, duration: float) -> None:
    p.add_argument("--rate", type=float, default=rate, help=f"events per second (default {rate:g})")
    p.add_argument("--duration", type=float, default=duration, help=f"seconds (default {duration:g})")
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--merchants", type=int, default=200)
    p.add_argument("--malformed", type=float, default=0.002, help="share of malformed records")
    p.add_argument("--bursts", type=float, default=0.002, help="share of events that start a payment burst")
    p.add_argument("--seed", type=int, default=7)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="streamrisk", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    b = sub.add_parser("broker", help="run the embedded broker on 127.0.0.1 until Ctrl-C")
    b.add_argument("--port", type=int, default=9092, help="0 picks a free port (default 9092)")
    b.add_argument("--kafka", action="store_true", help="real Apache Kafka (KRaft) instead of Tansu")
    b.add_argument("--data-dir", help="broker log and data folder (default: temporary)")
    b.add_argument(
        "--brokers", type=int, default=1,
        help="with --kafka: a KRaft cluster of this many nodes (3: topics get 3 replicas, min.insync.replicas"
        " 2); --port is the first node's, the others take free ports (default 1)",
    )
    _log_level(b)

    w = sub.add_parser("worker", help="run one worker")
    _common(w, worker=True)

    p = sub.add_parser("produce", help="send synthetic contract-valid traffic")
    _common(p)
    _traffic_args(p, 200.0, 30.0)

    lt = sub.add_parser(
        "loadtest",
        help="labelled scenario traffic to workers; latency, lag, quality; report.json and plots",
        description="Without --bootstrap: starts the embedded broker (Apache Kafka; --tansu for Tansu) "
        "and --workers workers (default 1). With --bootstrap: drives the workers already running there "
        "(and starts --workers more, default none).",
    )
    _common(lt)
    _load_args(lt, 500.0, 60.0)
    lt.add_argument("--workers", type=int, help="workers to start (default 1; 0 with --bootstrap)")
    lt.add_argument("--out", type=Path, help="folder for report.json, labels.jsonl and the plots "
                    "(default ./loadtest-report)")

    from .backtest import commands as backtest_commands
    from .recording import commands as recording_commands

    recording_commands.add_parsers(sub, _common)
    backtest_commands.add_parsers(sub, _common)
    from .training import commands as training_commands

    training_commands.add_parser(sub)

    pr = sub.add_parser(
        "publish-rules", help="check a rules file, then publish it on risk-rules (hot reload)"
    )
    _common(pr)
    pr.add_argument("file", type=Path, help="ruleset (YAML or JSON)")
    pr.add_argument("--name", help="message key: the ruleset's name (default main, or shadow)")
    pr.add_argument("--mode", choices=("live", "shadow"), default="live",
                    help="live: decide with it (promotes a shadow of the same version); shadow: evaluate it "
                    "beside the live ruleset, never acting (default live)")
    pr.add_argument("--check", action="store_true", help="only check the file; publish nothing")
    pr.add_argument("--retire-shadow", action="store_true",
                    help="then delete the shadow's record (key shadow): promote for good, also for workers "
                    "that start after the topic is compacted")

    d = sub.add_parser("demo", help="embedded broker, a worker, labelled traffic and the tables")
    _load_args(d, 300.0, 30.0)
    d.add_argument("--workers", type=int, default=1, help="workers to start (default 1)")
    d.add_argument("--out", type=Path, help="also write report.json, labels.jsonl and plots here")
    d.add_argument("--kafka", action="store_true", help=argparse.SUPPRESS)  # the default now
    d.set_defaults(bootstrap=None)
    _log_level(d)
    return ap


def _debug(args: argparse.Namespace) -> bool:
    level = getattr(args, "log_level", None) or os.environ.get("STREAMRISK_LOG_LEVEL", "")
    return level.strip().lower() == "debug"


def _fail(args: argparse.Namespace, message: str, code: int = 2) -> int:
    """One line on stderr (the traceback too with --log-level debug), and a non-zero exit code."""
    if _debug(args):
        traceback.print_exc()
    print(f"streamrisk {args.command}: {' '.join(message.split())}", file=sys.stderr)
    return code


def _load_args(p: argparse.ArgumentParser, rate: float, duration: float) -> None:
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=float, default=rate, help=f"events per second (default {rate:g})")
    pace.add_argument("--max", action="store_true", help="send as fast as possible instead of --rate")
    p.add_argument("--duration", type=float, default=duration, help=f"seconds (default {duration:g})")
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--merchants", type=int, default=200)
    p.add_argument("--days", type=float, default=7.0,
                   help="days of event time the run's traffic covers, ending now (default 7)")
    p.add_argument("--scenario-mix", help='per scenario, the share of events that start one: '
                   '"card_testing=0.002,bust_out=0", or "none" (defaults: docs/loadtest-and-backtest.md)')
    p.add_argument("--malformed", type=float, default=0.002, help="share of malformed records")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--tansu", action="store_true",
                   help="embedded Tansu (starts instantly) instead of Apache Kafka")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return _run(args)
    except (SettingsError, UserError) as exc:
        return _fail(args, str(exc))
    except RulesetError as exc:
        return _fail(args, f"rules not loaded: {'; '.join(exc.problems)}")
    except OSError as exc:  # a file or folder named in the settings (data dir, rules, replay file)
        where = f" {exc.filename}" if exc.filename else ""
        return _fail(args, f"cannot use{where}: {exc.strerror or exc}")
    except ValueError as exc:
        if args.command != "replay":
            raise
        return _fail(args, str(exc))  # a replay file line that is not a {topic, key, value} record
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.command == "broker":
        from .broker import run_broker

        if args.port != 0:  # 0 picks a free port
            check_port("127.0.0.1", args.port, "broker", "--port, or 0 for a free one")
        if args.brokers < 1 or (args.brokers > 1 and not args.kafka):
            return _fail(args, f"--brokers {args.brokers}: a cluster needs --kafka and at least 1 broker")
        return run_broker(args.port, "kafka" if args.kafka else "tansu", data_dir=args.data_dir,
                          brokers=args.brokers)
    if args.command == "demo":
        from .demo import run_demo
        from .rules.control import initial_ruleset

        # The demo's worker reads the same environment: refuse here, not in a child's log.
        initial_ruleset(Settings.from_env().check().rules_path)
        return run_demo(args)
    settings = _settings(args)
    if args.command == "worker":
        from .rules.control import initial_ruleset
        from .runtime.worker import run_worker

        settings.check()
        initial_ruleset(settings.rules_path)  # a broken rules file is reported before any waiting
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        check_port(settings.web_host, settings.web_port, "HTTP API", "--web-port or STREAMRISK_WEB_PORT")
        asyncio.run(wait_for_broker(settings.bootstrap, settings.connect_timeout_s))
        return run_worker(settings)
    if args.command == "publish-rules":
        return asyncio.run(_publish_rules(args, settings))
    if args.command == "replay":
        args.file.open("rb").close()  # an unreadable file is reported before any waiting
    if args.command == "train":
        from .training import commands as training_commands

        return training_commands.run(args, settings)
    if args.command in ("backtest", "shadow-report"):
        from .backtest import commands as backtest_commands

        return backtest_commands.run(args, settings)
    if args.command in ("produce", "record", "replay") or (args.command == "loadtest" and args.bootstrap):
        asyncio.run(_prepare(settings))  # (without --bootstrap, loadtest starts its own broker)
    if args.command in ("record", "replay"):
        from .recording import commands as recording_commands

        return recording_commands.run(args, settings)
    if args.command == "produce":
        return asyncio.run(_produce(args, settings))
    if args.command == "loadtest":
        from .demo import run_load

        return run_load(args, settings, demo=False)
    return 2


async def _prepare(settings: Settings) -> None:
    """Before a tool produces: a broker answers, and the contract topics exist as workers need them."""
    from .runtime.topics import ensure_topics

    await wait_for_broker(settings.bootstrap, settings.connect_timeout_s)
    await ensure_topics(settings, contract_only=True)


async def _publish_rules(args: argparse.Namespace, settings: Settings) -> int:
    """Load the file as a worker would (all problems listed), then send it as JSON."""
    import orjson

    from .loadgen.produce import make_producer
    from .rules import RulesetError, load_ruleset
    from .settings import CONTROL_TOPIC

    try:
        ruleset = load_ruleset(args.file)
    except RulesetError as exc:
        print(f"streamrisk: {args.file}: not published:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"{args.file}: ruleset {ruleset.version!r} with {len(ruleset.rules)} rules is valid")
    if args.check:
        return 0
    await _prepare(settings)
    # A shadow under the live ruleset's key would replace it in the compacted topic.
    name = args.name or ("shadow" if args.mode == "shadow" else "main")
    producer = make_producer(settings.bootstrap)
    await producer.start()
    try:
        topic = settings.topic(CONTROL_TOPIC)
        value = {**ruleset.to_mapping(), "mode": args.mode}
        await producer.send_and_wait(topic, orjson.dumps(value), key=name.encode())
        if args.retire_shadow:  # a tombstone: workers drop the shadow, compaction the record
            await producer.send_and_wait(topic, None, key=b"shadow")
    finally:
        await producer.stop()
    if args.retire_shadow:
        print(f"retired the shadow ruleset (tombstone for 'shadow' on {topic})")
    if args.mode == "shadow":
        print(f"published on {topic} as {name!r}; workers evaluate {ruleset.version!r} in shadow "
              "(see GET /stats, streamrisk shadow-report)")
    else:
        print(f"published on {topic} as {name!r}; workers switch to {ruleset.version!r} (see GET /stats)")
    return 0


async def _produce(args: argparse.Namespace, settings: Settings) -> int:
    from .loadgen.produce import produce, synthetic_stream
    from .loadgen.synthetic import Mix, Traffic

    traffic = Traffic(
        args.users, args.merchants, seed=args.seed, mix=Mix(malformed=args.malformed, bursts=args.bursts)
    )
    stats = await produce(
        settings.bootstrap,
        synthetic_stream(traffic),
        rate=args.rate,
        duration_s=args.duration,
        topic_prefix=settings.topic_prefix,
    )
    per_topic = ", ".join(f"{t}={n}" for t, n in sorted(stats.sent.items()))
    print(f"sent {stats.total} records in {stats.elapsed_s:.1f} s ({per_topic})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
