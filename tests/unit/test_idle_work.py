"""idle_work.py: deferred work runs once, in order, when the loop waits (or at the latest after a moment)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from antigravity_gw.idle_work import IdleWork


def test_without_a_running_loop_work_runs_at_once():
    done: list[int] = []
    IdleWork().defer(done.append, 1)
    assert done == [1]


def test_work_waits_until_the_caller_waits_then_runs_in_order():
    done: list[int] = []
    idle = IdleWork(latest=60)

    async def scenario() -> list[list[int]]:
        seen = []
        for n in (1, 2, 3):
            idle.defer(done.append, n)
        await asyncio.sleep(0)
        seen.append(list(done))  # steps of the loop go by: nothing runs yet
        idle.run_while_waiting()
        idle.run_while_waiting()  # twice before the loop turns: still one run
        seen.append(list(done))  # not in the caller's own step ...
        await asyncio.sleep(0)
        seen.append(list(done))  # ... but at its first suspension
        assert idle.pending == 0
        return seen

    assert asyncio.run(scenario()) == [[], [], [1, 2, 3]]
    assert done == [1, 2, 3]


def test_waiting_with_nothing_queued_schedules_nothing():
    idle = IdleWork(latest=60)

    async def scenario() -> None:
        idle.run_while_waiting()
        assert asyncio.get_running_loop()._ready == type(asyncio.get_running_loop()._ready)()  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_work_runs_at_the_latest_after_its_delay_and_once():
    done: list[int] = []
    idle = IdleWork(latest=0.01)

    async def scenario() -> list[int]:
        idle.defer(done.append, 1)
        await asyncio.sleep(0.05)
        after_delay = list(done)
        idle.run_now()  # nothing left: runs nothing twice
        idle.run_while_waiting()
        await asyncio.sleep(0.03)
        return after_delay

    assert asyncio.run(scenario()) == [1]
    assert done == [1]


def test_run_now_cancels_the_timer_and_a_later_entry_gets_its_own():
    done: list[int] = []
    idle = IdleWork(latest=0.02)

    async def scenario() -> list[list[int]]:
        seen = []
        idle.defer(done.append, 1)
        idle.run_now()
        seen.append(list(done))
        idle.defer(done.append, 2)
        await asyncio.sleep(0.06)
        seen.append(list(done))
        return seen

    assert asyncio.run(scenario()) == [[1], [1, 2]]


def test_a_failing_entry_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture):
    done: list[int] = []
    idle = IdleWork(latest=60)

    def broken(_: object) -> None:
        raise ValueError("boom")

    async def scenario() -> None:
        idle.defer(done.append, 1)
        idle.defer(broken, None)
        idle.defer(done.append, 2)
        idle.run_now()

    with caplog.at_level(logging.ERROR, logger="antigravity_gw.idle_work"):
        asyncio.run(scenario())
    assert done == [1, 2]
    assert "bookkeeping of a finished request failed" in caplog.text and "broken" in caplog.text


def test_work_queued_while_running_runs_in_the_same_run():
    done: list[str] = []
    idle = IdleWork(latest=60)

    def first(_: object) -> None:
        done.append("first")
        idle.defer(done.append, "queued by first")

    async def scenario() -> None:
        idle.defer(first, None)
        idle.run_now()

    asyncio.run(scenario())
    assert done == ["first", "queued by first"]
