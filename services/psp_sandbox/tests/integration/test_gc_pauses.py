"""The sandbox forgets nothing, so a full pass of the cyclic garbage collector over its state
grew with every payment and paused every request (0.25 s to 1.3 s over a benchmark). A sandbox
in its own process freezes what it holds every `freeze_state_interval_s`; one inside a test
run never does (what it froze would never be collected)."""

from __future__ import annotations

import asyncio
import gc

from psp_sandbox.testing import running_sandbox


async def test_a_sandbox_in_its_own_process_freezes_its_state_and_one_in_a_test_run_does_not():
    try:
        # given a sandbox as a test run starts it
        before = gc.get_freeze_count()
        async with running_sandbox():
            await asyncio.sleep(0.3)
            # then nothing is frozen
            assert gc.get_freeze_count() == before

        # given one as its own process runs it, every 50 ms
        async with running_sandbox(freeze_state_interval_s=0.05):
            kept = [{"payment": n} for n in range(1000)]  # state it holds from now on
            await asyncio.sleep(0.3)
            # then what it holds is out of the full passes' reach
            assert gc.get_freeze_count() >= before + len(kept)
    finally:
        gc.unfreeze()  # this test run's objects go back to the collector
