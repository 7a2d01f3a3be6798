"""The consumer "thread" run on the worker's loop (in_loop.py): no thread, calls awaited in place, and
the stop does what Faust's thread would do at its end (stop aiokafka's consumer, children, futures)."""

from __future__ import annotations

import asyncio
import threading

from mode import Service
from mode.threads import QueueServiceThread

from streamrisk.runtime.faust.in_loop import InLoop


class _Child(Service):
    stopped = False

    async def on_stop(self) -> None:
        self.stopped = True


class _Thread(QueueServiceThread):
    """Stands for Faust's consumer thread: a start hook, a thread-stop hook, a child and a task."""

    def __post_init__(self) -> None:
        self.child = _Child()
        self.add_dependency(self.child)
        self.events: list[str] = []
        self.ticks = 0

    async def on_start(self) -> None:
        self.events.append("on_start")

    async def on_thread_stop(self) -> None:
        self.events.append("on_thread_stop")

    @Service.task
    async def _tick(self) -> None:
        while not self.should_stop:
            self.ticks += 1
            await self.sleep(0.01)


class _InLoopThread(InLoop, _Thread):
    pass


async def test_runs_on_the_callers_loop_and_thread_and_stops_like_the_thread_would() -> None:
    threads_before = threading.active_count()
    service = _InLoopThread(loop=asyncio.get_running_loop())
    await service.start()
    assert threading.active_count() == threads_before  # no thread made
    assert service.thread_loop is asyncio.get_running_loop()
    seen: list[int] = []

    async def where() -> str:
        seen.append(threading.get_ident())
        return "done"

    assert await service.call_thread(where) == "done"
    await service.cast_thread(where)
    assert seen == [threading.get_ident()] * 2
    while service.ticks < 2:  # its tasks run on this loop
        await asyncio.sleep(0.01)
    await asyncio.wait_for(service.stop(), 5)
    assert service.events == ["on_start", "on_thread_stop"]
    assert service.child.stopped
