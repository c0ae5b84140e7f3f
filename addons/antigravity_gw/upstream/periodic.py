"""A background task that runs one coroutine function at a fixed interval, from ``start`` until ``stop``.

The watchers (account directory, model-map file) and the ``ag.accounts`` snapshot all poll this way.
The task is owned here (the loop keeps only a weak reference to it), and a failing round is logged and
the next one still runs: a poller that died silently would leave its data stale until a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


class Periodic:
    def __init__(self, tick: Callable[[], Awaitable[object]], *, name: str) -> None:
        self.tick = tick
        self.name = name  # the task's name, also used in log lines
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None

    def start(self, interval: float) -> None:
        """Call ``tick()`` every ``interval`` seconds, the first time after one interval; no-op if running."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(interval), name=self.name)

    def cancel(self) -> None:
        """Stop without waiting for the task to finish (from a synchronous ``done`` hook)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.tick()
            except Exception:  # a task boundary: nobody awaits this task until stop()
                logger.exception("%s: this round failed; trying again in %ss", self.name, interval)
