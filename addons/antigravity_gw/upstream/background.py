"""Background tasks an addon starts and nobody awaits: named, kept, failures logged, cancelled at ``done``.

The event loop keeps only a weak reference to a task, so a task nobody holds may vanish mid-way; one that
fails would only say so when collected ("Task exception was never retrieved"). Each owner (the Gateway,
the account commands) holds one ``BackgroundTasks``: it keeps every task until it ends, logs a failure
with the task's name, and ``cancel_all`` in the owner's ``done`` leaves nothing running after shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class BackgroundTasks:
    def __init__(self, owner: str) -> None:
        self.owner = owner  # prefixes every task name: "ag-gateway/reload-accounts"
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.owner}/{name}")
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self) -> None:
        """Until every task (and any task they start meanwhile) has ended."""
        while self._tasks:
            await asyncio.gather(*self._tasks)  # a failure is raised here (tests see it)

    async def cancel_all(self) -> None:
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):  # failures were logged by _ended
                await task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            logger.error("background task %s failed: %s", task.get_name(), error, exc_info=error)
