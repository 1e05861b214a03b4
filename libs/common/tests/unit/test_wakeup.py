"""A loop sleeping on a `Wakeup` stops when cancelled, even at the instant it is woken (where
`asyncio.wait_for` on Python 3.11 swallows the cancellation and the loop runs on)."""

from __future__ import annotations

import asyncio

import pytest

from common.wakeup import Wakeup


async def test_a_cancel_that_comes_with_a_wakeup_stops_the_sleeper():
    # given a loop that sleeps on a wakeup, as the outbox relay does
    wakeup = Wakeup()
    rounds = 0

    async def loop() -> None:
        nonlocal rounds
        while True:
            await wakeup.sleep(5)
            rounds += 1

    for _ in range(50):
        task = asyncio.create_task(loop())
        await asyncio.sleep(0)  # the loop is asleep
        # when it is woken and cancelled in the same instant
        wakeup.set()
        task.cancel()
        # then it stops
        done, _ = await asyncio.wait({task}, timeout=1)
        assert done == {task}
        assert task.cancelled()


async def test_a_wakeup_cuts_the_sleep_short_and_a_timeout_ends_it():
    wakeup = Wakeup()
    loop = asyncio.get_running_loop()
    # a set before the sleep is not lost
    wakeup.set()
    started = loop.time()
    await wakeup.sleep(5)
    assert loop.time() - started < 1
    # and is consumed: the next sleep lasts its timeout
    started = loop.time()
    await wakeup.sleep(0.05)
    assert loop.time() - started >= 0.04


@pytest.mark.parametrize("delay", [0.0, 0.01])
async def test_a_set_while_asleep_wakes_it(delay):
    wakeup = Wakeup()
    asyncio.get_running_loop().call_later(delay, wakeup.set)
    async with asyncio.timeout(1):
        await wakeup.sleep(5)


async def test_a_sleep_says_whether_it_was_woken():
    wakeup = Wakeup()
    assert await wakeup.sleep(0.01) is False
    wakeup.set()
    assert await wakeup.sleep(5) is True
