"""Faust's consumer "thread" run on the worker's own event loop instead of a thread of its own.

Faust runs aiokafka's consumer in a thread with its own loop so that agents blocking the main loop do not
stall heartbeats, and every call into it (one `getmany` per fetch, each commit and seek) is a hop between
threads and back: two self-pipe wake-ups and a handover of the GIL, which the other thread must give
back. Under live traffic, with batches of a few records, those hops cost more than the records (about 3,500
futex calls a second at 1,000 payments/s). The batch loop never blocks its loop for long (batches are
bounded by `STREAMRISK_BATCH_MAX`), so here the consumer lives on that loop and a "call into the thread"
is a plain await. `STREAMRISK_CONSUMER_THREAD=1` keeps Faust's thread.

This relies on mode's ServiceThread and Faust's ConsumerThread internals (pinned in
tests/test_runtime_pins.py): `start` starts the service without a thread, `stop` runs the stopping steps
ServiceThread leaves to its thread, and `call_thread` / `cast_thread` await the call in place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mode import Service
from mode.utils.futures import maybe_async


class InLoop:
    """Mixin for a mode `ServiceThread` subclass (Faust's consumer thread): run it on the caller's loop."""

    wait_for_shutdown = False  # no thread to signal the end of its shutdown

    def __init__(self, *args: Any, loop: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, loop=loop, thread_loop=loop, **kwargs)  # type: ignore[call-arg]

    async def start(self) -> None:
        await Service.start(self)  # type: ignore[arg-type]

    async def on_stop(self) -> None:
        await super().on_stop()  # type: ignore[misc]
        await self.on_thread_stop()  # type: ignore[attr-defined]  # stops aiokafka's consumer

    async def _stop_children(self) -> None:
        await self._default_stop_children()  # type: ignore[attr-defined]

    async def _stop_futures(self) -> None:
        await self._default_stop_futures()  # type: ignore[attr-defined]

    async def _stop_exit_stacks(self) -> None:
        await self._default_stop_exit_stacks()  # type: ignore[attr-defined]

    async def call_thread(self, fun: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        return await maybe_async(fun(*args, **kwargs))

    async def cast_thread(self, fun: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> None:
        await maybe_async(fun(*args, **kwargs))
