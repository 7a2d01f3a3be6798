"""The `record` and `replay` commands (parsers and runners; cli.py dispatches to them)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from ..settings import CONTROL_TOPIC, INPUT_TOPICS, Settings
from .jsonl import RecordingError, read_recording

DEFAULT_TOPICS = (*INPUT_TOPICS, CONTROL_TOPIC)


def add_parsers(sub: argparse._SubParsersAction, common: object) -> None:
    """`common(parser)` adds --bootstrap and --topic-prefix."""
    r = sub.add_parser(
        "record", help="copy topics to a JSON Lines recording (for replay and backtest)",
        description="Copy topics, from their first offset, to a JSON Lines file: one "
        '{"topic", "key", "value", "timestamp", "partition", "offset"} per line.',
    )
    common(r)  # type: ignore[operator]
    r.add_argument("topics", nargs="*", metavar="TOPIC",
                   help=f"contract topic names, without prefix (default: {' '.join(DEFAULT_TOPICS)})")
    r.add_argument("--out", type=Path, required=True, help="recording file to write")
    r.add_argument("--follow", action="store_true",
                   help="keep recording new records until Ctrl-C or --duration")
    r.add_argument("--duration", type=float, help="stop after this many seconds")

    p = sub.add_parser("replay", help="send a JSON Lines recording to the broker, keys and event times kept")
    common(p)  # type: ignore[operator]
    p.add_argument("file", type=Path)
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float,
                      help="N times event-time speed (1 = as recorded; 60 = an hour in a minute)")
    pace.add_argument("--rate", type=float, help="records per second")
    pace.add_argument("--max", action="store_true", help="as fast as possible (the default)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if args.command == "record":
            return asyncio.run(_record(args, settings))
        return asyncio.run(_replay(args, settings))
    except (RecordingError, LookupError, ValueError, OSError) as exc:
        print(f"streamrisk {args.command}: {exc}", file=sys.stderr)
        return 1


async def _record(args: argparse.Namespace, settings: Settings) -> int:
    from .record import record

    topics = args.topics or list(DEFAULT_TOPICS)
    stop = asyncio.Event()
    signals = _stop_on_signals(stop)
    try:
        stats = await record(settings.bootstrap, topics, args.out, prefix=settings.topic_prefix,
                             follow=args.follow, duration_s=args.duration, stop=stop)
    finally:
        for sig in signals:
            asyncio.get_running_loop().remove_signal_handler(sig)
    per_topic = ", ".join(f"{t}={n}" for t, n in sorted(stats.per_topic.items())) or "nothing"
    span = ""
    if stats.first_ts is not None and stats.last_ts is not None:
        span = f", {(stats.last_ts - stats.first_ts) / 1000:.1f} s of record time"
    stopped = "stopped; " if stop.is_set() else ""
    print(f"{stopped}recorded {stats.total} records to {args.out} ({per_topic}{span})", flush=True)
    return 0


def _stop_on_signals(stop: asyncio.Event) -> list[signal.Signals]:
    """SIGINT and SIGTERM set `stop`: the recording ends after the fetch in hand, file closed whole.

    Set explicitly, not left to asyncio.run's KeyboardInterrupt: a process started in the background
    by a shell inherits SIGINT ignored, and SIGTERM's default would end it with its last fetch unwritten.
    """
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # no signal handlers here (not the main thread)
            continue
        installed.append(sig)
    return installed


async def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from .replay import replay

    records = read_recording(args.file)
    stats = await replay(settings.bootstrap, records, prefix=settings.topic_prefix,
                         speed=args.speed, rate=args.rate)
    per_topic = ", ".join(f"{t}={n}" for t, n in sorted(stats.sent.items())) or "nothing"
    paced = f"; event time covered {stats.event_span_ms / 1000:.1f} s" if args.speed else ""
    print(f"sent {stats.total} records in {stats.elapsed_s:.1f} s ({per_topic}){paced}")
    return 0
