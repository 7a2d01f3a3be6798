"""Running one worker process: event loop, logging, the Faust worker around the app."""

from __future__ import annotations

import asyncio
import io
import logging
import signal

from .settings import Settings


def _dump_tasks(loop: asyncio.AbstractEventLoop) -> None:
    out = io.StringIO()
    for task in asyncio.all_tasks(loop):
        print(f"--- {task.get_name()}: {task.get_coro()!r}", file=out)
        task.print_stack(limit=12, file=out)
    logging.getLogger("streamrisk.worker").warning("asyncio tasks:\n%s", out.getvalue())


def run_worker(settings: Settings) -> int:
    """Run a worker until SIGINT/SIGTERM; returns the exit code."""
    try:
        import uvloop

        # ~20% more events/s than the default loop for the same agent.
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        pass
    import faust

    from .app import build_app
    from .topics import ensure_topics

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app, _ = build_app(settings)
    loop = asyncio.new_event_loop()
    created = loop.run_until_complete(ensure_topics(settings))
    if created:
        logging.getLogger("streamrisk.worker").info("created %d missing topics", len(created))
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
