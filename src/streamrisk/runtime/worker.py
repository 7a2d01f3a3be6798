"""Running one worker process: event loop, logging, the Faust worker around the app."""

from __future__ import annotations

import asyncio
import io
import logging
import signal
from dataclasses import replace

from ..settings import AT_LEAST_ONCE, EXACTLY_ONCE, Settings

log = logging.getLogger("streamrisk.runtime.worker")


def _dump_tasks(loop: asyncio.AbstractEventLoop) -> None:
    out = io.StringIO()
    for task in asyncio.all_tasks(loop):
        print(f"--- {task.get_name()}: {task.get_coro()!r}", file=out)
        task.print_stack(limit=12, file=out)
    logging.getLogger("streamrisk.runtime.worker").warning("asyncio tasks:\n%s", out.getvalue())


async def resolve_guarantee(settings: Settings) -> Settings:
    """Settle `auto` by asking the broker for transactions; refuse exactly-once where it has none."""
    from .faust.transactions import transactions_unsupported
    from .preflight import UserError

    wanted = settings.processing_guarantee
    if wanted == AT_LEAST_ONCE:
        return settings
    why_not = await transactions_unsupported(settings.bootstrap.split(","))
    if why_not is None:
        return replace(settings, processing_guarantee=EXACTLY_ONCE)
    if wanted == EXACTLY_ONCE:
        raise UserError(
            f"STREAMRISK_PROCESSING_GUARANTEE=exactly_once, but the broker at {settings.bootstrap} "
            f"runs no transactions ({why_not}); use at_least_once (or auto) with this broker"
        )
    log.warning(
        "the broker runs no transactions (%s): processing is at-least-once (outputs can repeat "
        "after a crash, identical; README, Guarantees)", why_not,
    )
    return replace(settings, processing_guarantee=AT_LEAST_ONCE)


def run_worker(settings: Settings) -> int:
    """Run a worker until SIGINT/SIGTERM; returns the exit code."""
    try:
        import uvloop

        # ~20% more events/s than the default loop for the same agent.
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        pass
    import faust

    from .faust.app import build_app
    from .topics import ensure_topics, record_limit, resolve_replication

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    loop = asyncio.new_event_loop()
    settings = loop.run_until_complete(resolve_guarantee(settings))
    # Before build_app: Faust creates topics of its own with this replication.
    settings = loop.run_until_complete(resolve_replication(settings))
    app, processor = build_app(settings)
    created = loop.run_until_complete(ensure_topics(settings))
    processor.dead_letter_limit = loop.run_until_complete(
        record_limit(settings, processor.t_dead, processor.dead_letter_limit)
    )
    if created:
        logging.getLogger("streamrisk.runtime.worker").info("created %d missing topics", len(created))
    # `kill -USR1 <pid>` logs where every task is waiting: the first question about a stuck worker.
    loop.add_signal_handler(signal.SIGUSR1, _dump_tasks, loop)
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True, loop=loop)
    # Faust's terminal spinner sets the root logger to DEBUG at levels of WARNING and above, so every
    # library's debug call builds a log record only to drop it: about a tenth of a worker's CPU.
    worker.spinner = None
    logging.getLogger("streamrisk").setLevel(settings.log_level.upper())
    for name in settings.debug_loggers:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
