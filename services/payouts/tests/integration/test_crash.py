"""The payouts process killed (SIGKILL) after the provider accepted the order and before our
commit: the restarted process finds the order at the provider, creates no second one, and
settles the payout once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from common.testing.waiting import eventually
from payouts.testing import PayoutsHarness, capture_succeeded


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(harness: PayoutsHarness, port: int) -> dict[str, str]:
    s = harness.settings
    return {
        **os.environ,
        "MARKETPAY_PROFILE": "test",
        "MARKETPAY_DATABASE_URL": s.database_url.get_secret_value(),
        "MARKETPAY_DB_SCHEMA": s.db_schema,
        "MARKETPAY_AMQP_URL": s.amqp_url.get_secret_value(),
        "MARKETPAY_BROKER_NAMESPACE": s.broker_namespace,
        "MARKETPAY_BROKER_QUEUE_EXPIRES_MS": str(s.broker_queue_expires_ms),
        "MARKETPAY_HTTP_PORT": str(port),
        "MARKETPAY_PROVIDER_BASE_URL": s.provider_base_url,
        "MARKETPAY_PROVIDER_API_KEY": s.provider_api_key.get_secret_value(),
        "MARKETPAY_PROVIDER_TIMEOUT_S": "10",
        "MARKETPAY_CLAIM_LEASE_S": "12",
        "MARKETPAY_PENDING_POLL_S": "0.5",
        "MARKETPAY_EXECUTOR_POLL_INTERVAL_S": "0.2",
        "MARKETPAY_LOG_LEVEL": "WARNING",
    }


@contextlib.asynccontextmanager
async def payouts_process(env: dict[str, str], port: int) -> AsyncIterator[Any]:
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "payouts", env=env)
    try:
        async with aiohttp.ClientSession() as http:

            async def up() -> bool:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(up, within=30)
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 20)


@pytest.mark.parametrize("harness", [{"workers": False}], indirect=True)
async def test_killed_after_the_provider_accepted_and_before_our_commit(
    harness: PayoutsHarness,
) -> None:
    tenant = await harness.new_tenant(suppliers=1)
    await harness.deliver_capture(
        tenant, capture_succeeded(supplier_id=tenant.suppliers[0], amount=3000)
    )
    [payout] = await harness.compute(tenant)
    # the provider creates the order at once and answers 5 s later; no callback reaches us
    await harness.provider_faults(create_delay_s=5.0, attempt_delay_s=0.2, lose_callback=True)
    port = free_port()
    env = _env(harness, port)
    async with payouts_process(env, port) as process:
        await harness.execute(tenant, payout["id"])  # this replica has no executor

        async def accepted() -> bool:
            return bool((await harness.provider_orders())["data"])

        await eventually(accepted, within=20)
        # when the process dies while waiting for the provider's answer
        process.kill()
        await process.wait()
    assert (await harness.payout(tenant, payout["id"]))["status"] == "PENDING"
    await harness.provider_faults()  # the provider answers normally again
    # then a new process, once the dead one's lease has run out, settles it
    async with payouts_process(env, port):
        await harness.until_payout(tenant, payout["id"], "SETTLED", within=40)
    orders = await harness.provider_orders()
    assert [o["orderId"] for o in orders["data"]] == [payout["id"]]
    assert orders["create_requests"] == 1
    assert len(await harness.published("payout.settled", payout_id=payout["id"])) == 1
    assert (await harness.balances(tenant))["BANK_CLEARING"] == 2625
