from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from psp_sandbox.testing import Receiver, Sandbox, running_sandbox, webhook_receiver


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with running_sandbox() as sandbox:
        yield sandbox


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with webhook_receiver() as receiver:
        yield receiver


@pytest_asyncio.fixture
async def account(sandbox: Sandbox, receiver: Receiver) -> dict[str, Any]:
    return await sandbox.merchant_account(f"Test_{secrets.token_hex(3)}", receiver.url)
