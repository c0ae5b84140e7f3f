"""BackgroundTasks: names its tasks, keeps them until they end, logs a failure, cancels the rest at done."""

from __future__ import annotations

import asyncio
import logging

import pytest

from antigravity_gw.upstream.background import BackgroundTasks


async def test_a_task_is_named_kept_until_it_ends_then_forgotten() -> None:
    tasks = BackgroundTasks("owner")
    gate = asyncio.Event()
    task = tasks.spawn(gate.wait(), "waiting")
    assert task.get_name() == "owner/waiting" and len(tasks) == 1
    gate.set()
    await tasks.wait()
    assert len(tasks) == 0 and task.done()


async def test_a_failure_is_logged_with_the_tasks_name(caplog: pytest.LogCaptureFixture) -> None:
    tasks = BackgroundTasks("owner")

    async def broken() -> None:
        raise RuntimeError("disk full")

    with caplog.at_level(logging.ERROR, logger="antigravity_gw.upstream.background"):
        tasks.spawn(broken(), "save")
        with pytest.raises(RuntimeError):
            await tasks.wait()
        await asyncio.sleep(0)
    assert "owner/save failed: disk full" in caplog.text
    assert len(tasks) == 0


async def test_cancel_all_stops_every_running_task() -> None:
    tasks = BackgroundTasks("owner")
    forever = [tasks.spawn(asyncio.sleep(3600), f"sleep-{i}") for i in range(3)]
    await tasks.cancel_all()
    assert all(t.cancelled() for t in forever) and len(tasks) == 0
