"""A rolling upgrade, old and new versions side by side: one process of the current capture and
checkout (v1), and one of each of a next version (v2) whose events carry a field v1 does not
know, on one database and one broker namespace, competing for the same queues. A burst of
SHIPPED events (each sent twice) flows through both: every payment is captured exactly once,
PAID once, nothing is dead-lettered, v1 consumed events that v2 produced, and both versions did
some of the work.

Run as a child process (`python -m tests.test_rolling_upgrade capture-v2`), this module is the
next version: the current service whose every domain event carries `rolled_out_in`."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from collections import Counter
from typing import Any

import aiohttp
import asyncpg
import pytest

from bench.capture_shipment import (
    COMPANY_KEY,
    QUEUES,
    authorise,
    new_tenant,
    service_env,
    ship,
    until_paid,
    write_authorised,
)
from bench.processes import child, delete_queues, route_webhooks, scratch_services, serve_service
from common.broker import Names
from common.testing.fixtures import ServiceDb, delete_namespace
from common.testing.outbox import record_outbox
from tests.test_scale_out import count, dead_lettered, metric, moves_to_paid, psp_captures

PAYMENTS = 40
ADDED_FIELD = "rolled_out_in"
pytestmark = pytest.mark.slow


def run_next_version(service: str) -> None:
    """The next version of `service`: its domain events carry one more field (added the way a
    new version adds one: optional for readers, always sent by the new producer)."""
    import common.broker.outbox as outbox
    import common.events as events

    current = events.make_envelope

    def make_envelope(event_type: str, data: Any, **kwargs: Any) -> events.Envelope:
        envelope = current(event_type, data, **kwargs)
        if event_type not in events.CATALOGUE:
            return envelope
        return envelope.model_copy(update={"data": {**envelope.data, ADDED_FIELD: "v2"}})

    outbox.make_envelope = make_envelope  # type: ignore[assignment]
    asyncio.run(serve_service(service))


async def record_outbox_of(db: ServiceDb) -> None:
    conn = await asyncpg.connect(db.dsn, server_settings={"search_path": db.schema})
    try:
        assert await record_outbox(conn)
    finally:
        await conn.close()


async def test_old_and_new_versions_side_by_side(servers):
    names = Names(f"roll.{secrets.token_hex(3)}.", queue_expires_ms=10 * 60 * 1000)
    amqp = servers.amqp_url
    module = "tests.test_rolling_upgrade"
    async with scratch_services(servers.pg_admin_dsn, "checkout", "webhooks", "capture") as dbs:
        small = {"MARKETPAY_CONSUMER_PREFETCH": "5", "MARKETPAY_CONSUMER_BATCH_SIZE": "5"}
        try:
            async with child(module, "sandbox", {"BENCH_COMPANY_KEY": COMPANY_KEY}) as sandbox:
                psp = {"MARKETPAY_PSP_BASE_URL": f"{sandbox.url}/v71"}
                psp["MARKETPAY_PSP_API_KEY"] = COMPANY_KEY
                capture_env = service_env(dbs["capture"], amqp, names, **psp, **small)
                checkout_env = service_env(dbs["checkout"], amqp, names, **psp, **small)
                webhooks_env = service_env(
                    dbs["webhooks"],
                    amqp,
                    names,
                    MARKETPAY_HMAC_ENCRYPTION_KEY=secrets.token_hex(32),
                )
                async with (
                    child(module, "webhooks", webhooks_env) as webhooks,
                    child(module, "capture", capture_env) as capture_v1,
                    child(module, "capture-v2", capture_env) as capture_v2,
                    child(module, "checkout", checkout_env) as checkout_v1,
                    child(module, "checkout-v2", checkout_env) as checkout_v2,
                    aiohttp.ClientSession() as http,
                ):
                    # (the relay deletes what it published: keep a copy of what each writes)
                    await record_outbox_of(dbs["capture"])
                    # given a tenant with authorised payments, its webhooks to the service
                    tenant = await new_tenant(amqp, names, dbs, http, sandbox.url)
                    payments = [await authorise(http, sandbox.url, tenant) for _ in range(PAYMENTS)]
                    await write_authorised(dbs, tenant, payments)
                    await route_webhooks(
                        http,
                        sandbox.url,
                        webhooks.url,
                        tenant.merchant_account,
                        tenant.operator_key,
                    )

                    # when a burst of SHIPPED arrives, each event twice
                    for _ in range(2):
                        await ship(amqp, names, tenant, payments, rate=500.0)

                    # then every payment is PAID, captured once, with one PSP request
                    ids = [p.id for p in payments]
                    paid = await until_paid(dbs["checkout"], ids, within=240)
                    assert len(paid) == len(ids)
                    rows = await count(dbs["capture"], "SELECT payment_id, status FROM captures")
                    assert Counter(r["payment_id"] for r in rows) == Counter(ids), "captures"
                    assert {r["status"] for r in rows} == {"SUCCEEDED"}
                    captured = await psp_captures(http, sandbox.url, tenant)
                    assert captured == Counter(p.psp_reference for p in payments), "PSP requests"
                    assert await moves_to_paid(dbs["checkout"]) == Counter(ids), "PAID"
                    # nothing dead-lettered: v1 read v2's events, ignoring the added field
                    assert await dead_lettered(amqp, names) == 0
                    v2_events = await count(
                        dbs["capture"],
                        "SELECT envelope FROM outbox_log WHERE envelope->'data' ? $1",
                        ADDED_FIELD,
                    )
                    assert v2_events, "the next version published nothing"
                    assert all(
                        json.loads(r["envelope"])["data"][ADDED_FIELD] == "v2" for r in v2_events
                    )
                    # and both versions did some of the work, v1 checkout on v2's events too
                    for replica in (capture_v1, capture_v2):
                        assert await metric(http, replica, "capture_psp_calls") > 0
                    for replica in (checkout_v1, checkout_v2):
                        done = await metric(http, replica, "consumer_messages", "checkout.captures")
                        assert done > 0
        finally:
            await delete_queues(amqp, names, QUEUES)
            await delete_namespace(amqp, names)


if __name__ == "__main__":
    role = sys.argv[1] if len(sys.argv) > 1 else ""
    if role.endswith("-v2"):
        run_next_version(role.removesuffix("-v2"))
    elif role == "sandbox":
        from bench.processes import serve_sandbox

        asyncio.run(serve_sandbox())
    else:
        asyncio.run(serve_service(role))
