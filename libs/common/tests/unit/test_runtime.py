"""A service process's start-up: what it leaves alive is kept out of full collections, and it
runs on uvloop's event loop."""

from __future__ import annotations

import asyncio
import gc
from dataclasses import dataclass
from typing import Any

import pytest
import uvloop
from aiohttp import web

from common import runtime


def test_after_freezing_a_full_collection_walks_only_what_came_after() -> None:
    try:
        runtime.freeze_startup_objects()
        frozen = gc.get_freeze_count()
        since = [[n] for n in range(1000)]  # what a service allocates after its start-up
        # then the oldest generation, which a full collection walks, holds none of what was
        # alive before; what came after is still collected as usual
        assert frozen > 10_000
        assert len(gc.get_objects(generation=2)) < frozen / 100
        assert since[-1] == [999]
    finally:
        gc.unfreeze()


@dataclass
class _Settings:
    service_name: str = "probe"
    log_level: str = "INFO"
    http_host: str = "127.0.0.1"
    http_port: int = 0


def test_a_served_application_freezes_after_its_own_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served: list[web.Application] = []
    loops: list[asyncio.AbstractEventLoop] = []

    def run_app(app: web.Application, *, loop: asyncio.AbstractEventLoop, **_: Any) -> None:
        served.append(app)
        loops.append(loop)
        loop.close()

    monkeypatch.setattr(web, "run_app", run_app)
    app = web.Application()
    runtime.serve(app, _Settings())
    # the hook comes after everything the application registered, cleanup contexts first
    assert served == [app]
    assert list(app.on_startup)[-1] is runtime._freeze_after_startup
    assert isinstance(loops[0], uvloop.Loop)


def test_a_service_loop_runs_a_coroutine_to_its_result() -> None:
    async def which_loop() -> asyncio.AbstractEventLoop:
        await asyncio.sleep(0)
        return asyncio.get_running_loop()

    loop = runtime.run_on_service_loop(which_loop())
    assert isinstance(loop, uvloop.Loop)
    assert loop.is_closed()  # as asyncio.run leaves it
