"""`[accepted]` means stored (DESIGN §2 invariant 4): a database lost in the middle of a
request gets the PSP no 2xx and leaves nothing half-stored; the PSP's retry then succeeds."""

from __future__ import annotations

import asyncio

import asyncpg

from common.testing.waiting import eventually
from webhooks.testing import batch, item, signed


async def _writer_waits_on_lock(admin: asyncpg.Connection) -> bool:
    waiting = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return bool(waiting)


async def test_a_database_lost_mid_request_answers_no_2xx_and_stores_nothing(
    proxied_webhooks, test_database
):
    # given a tenant, and a signed batch of three notifications
    webhooks, proxy, schema = (
        proxied_webhooks.harness,
        proxied_webhooks.proxy,
        proxied_webhooks.schema,
    )
    tenant = await webhooks.new_tenant()
    body = batch(*(signed(item(tenant), tenant.hmac_key) for _ in range(3)))
    admin = await asyncpg.connect(test_database.admin_dsn)
    try:
        # the notifications table locked, so the request's transaction is open and waiting
        await admin.execute(f'BEGIN; LOCK TABLE "{schema}".notifications IN EXCLUSIVE MODE')
        request = asyncio.create_task(webhooks.notify(body))
        await eventually(lambda: _writer_waits_on_lock(admin))
        # when the database connection is cut while the transaction is open
        await proxy.sever()
        status, answer = await request
        await admin.execute("ROLLBACK")
        # then the PSP got no 2xx, and nothing of the batch was stored or queued to publish
        assert status == 503, answer
        assert answer["error"]["code"] == "service_unavailable"
        assert await admin.fetchval(f'SELECT count(*) FROM "{schema}".notifications') == 0
        assert await admin.fetchval(f'SELECT count(*) FROM "{schema}".outbox') == 0
        # and when the database is back, the PSP's retry is accepted, stored and published once
        proxy.restore()
        assert await webhooks.notify(body) == (200, "[accepted]")
        assert await admin.fetchval(f'SELECT count(*) FROM "{schema}".notifications') == 3
        await webhooks.bus.settle(3)
        assert len(webhooks.bus.received) == 3
    finally:
        await admin.close()


async def test_a_database_down_before_the_request_answers_503_and_stays_alive(proxied_webhooks):
    # given
    webhooks, proxy = proxied_webhooks.harness, proxied_webhooks.proxy
    tenant = await webhooks.new_tenant()
    body = batch(signed(item(tenant), tenant.hmac_key))
    # when the database is unreachable
    await proxy.sever()
    status, answer = await webhooks.notify(body)
    # then
    assert status == 503, answer
    assert answer["error"]["code"] == "service_unavailable"
    proxy.restore()
    assert await webhooks.notify(body) == (200, "[accepted]")
    await webhooks.bus.settle(1)
    assert len(webhooks.bus.received) == 1
