"""upstream/periodic.py: a background poller that survives a failing round and stops cleanly."""

import asyncio
import logging

from antigravity_gw.upstream.periodic import Periodic


async def wait_for(condition) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


async def test_ticks_until_stopped_and_a_failing_round_is_logged_not_fatal(caplog):
    rounds: list[int] = []

    async def tick() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise OSError("disk hiccup")

    poller = Periodic(tick, name="test-poller")
    poller.start(0.001)
    await wait_for(lambda: len(rounds) >= 3)
    await poller.stop()
    assert not poller.running
    stopped_at = len(rounds)
    await asyncio.sleep(0.02)
    assert len(rounds) == stopped_at, "no round runs after stop()"
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failures] == ["test-poller: this round failed; trying again in 0.001s"]
    assert "disk hiccup" in caplog.text  # the traceback is logged with it


async def test_start_twice_keeps_one_task_and_stop_without_start_is_a_no_op():
    async def nothing() -> None:
        pass

    poller = Periodic(nothing, name="idle")
    await poller.stop()
    poller.start(60)
    task = poller._task
    poller.start(60)
    assert poller._task is task and poller.running
    await poller.stop()
    assert task is not None and task.cancelled()
