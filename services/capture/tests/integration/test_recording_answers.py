"""The executor records a batch of PSP answers without waiting for a capture that another
transaction holds (a notification about it being applied): such a wait, while that
transaction waits for a capture of the batch, is a deadlock that PostgreSQL breaks only after
a second. The answer it skipped is recorded on its own."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from capture import sending
from capture.domain import Lease, Received, first_claim
from capture.repo import PgRepo


async def test_a_batch_of_answers_skips_the_capture_another_transaction_holds(capture):
    # given two captured payments
    tenant = await capture.new_tenant(capture_mode="ON_SHIPMENT")
    first = await capture.authorise(tenant, [10000])
    second = await capture.authorise(tenant, [20000])
    for payment in (first, second):
        await capture.ship(tenant, payment)
    [one] = await capture.until_captured(tenant, first)
    [two] = await capture.until_captured(tenant, second)
    now = datetime.now(UTC)
    pool = capture.main.pool

    async def answers(conn) -> list:
        repo = PgRepo(conn)
        found = [await repo.capture(c["id"]) for c in (one, two)]
        lease = Lease(uuid.uuid4(), now + timedelta(minutes=1), now)
        return [(first_claim(c, lease), Received("PSPLATE0001")) for c in found if c]

    # when another transaction holds the first capture while a batch of answers is recorded
    async with pool.acquire() as holder, holder.transaction():
        await holder.execute("SELECT 1 FROM captures WHERE id = $1 FOR UPDATE", one["id"])
        async with pool.acquire() as conn:
            batch = await answers(conn)
            async with conn.transaction():
                busy = await asyncio.wait_for(
                    sending.record_answers(
                        PgRepo(conn), batch, now=now, retry_delays=[], skip_busy=True
                    ),
                    timeout=5,
                )
            # then the batch did not wait: the held capture's answer comes back to record later
            assert [claim.capture_id for claim, _ in busy] == [one["id"]]

            # (without skipping, the same batch waits for the lock)
            with pytest.raises(TimeoutError):
                async with conn.transaction():
                    await asyncio.wait_for(
                        sending.record_answers(PgRepo(conn), batch, now=now, retry_delays=[]),
                        timeout=0.5,
                    )
