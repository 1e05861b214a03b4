"""The overdue scheduler with two checkout replicas on one database: every overdue payment is
flagged, and `payment.overdue` published, exactly once per payment and due date."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import aiohttp

from checkout.app import create_app
from checkout.settings import Settings
from common.events import DOMAIN_EXCHANGE, OMS_EXCHANGE, OMS_STATUS_CHANGED
from common.runtime import DB_POOL
from common.testing.apps import running
from common.testing.waiting import eventually

PAYMENTS = 12


async def test_overdue_is_flagged_once_under_two_scheduler_replicas(
    checkout, servers, service_db, broker_names, sandbox
):
    # `checkout` (the fixture's replica, ticking every 60 s) feeds the tenancy replica; two
    # more replicas on the same database tick every 20 ms and race for the same rows
    def settings() -> Settings:
        return Settings(
            profile="test",
            database_url=service_db.dsn,
            db_schema=service_db.schema,
            amqp_url=servers.amqp_url,
            broker_namespace=broker_names.namespace,
            broker_queue_expires_ms=broker_names.queue_expires_ms,
            outbox_poll_interval_s=0.1,
            psp_base_url=f"{sandbox.url}/v71",
            psp_api_key="test-company-key",
            overdue_interval_s=0.02,
        )

    first, second = create_app(settings()), create_app(settings())
    received: list[dict[str, Any]] = []
    async with (
        running(first) as url,
        running(second),
        aiohttp.ClientSession() as http,
    ):
        amqp = await aio_pika.connect_robust(servers.amqp_url)
        try:
            channel = await amqp.channel()
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            await queue.bind(broker_names.exchange(DOMAIN_EXCHANGE), routing_key="payment.overdue")

            async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                async with message.process():
                    received.append(json.loads(message.body))

            await queue.consume(on_message)
            # given bank-transfer payments whose orders shipped 40 days ago (terms: 30 days)
            tenant = await checkout.new_tenant(suppliers=1)
            await checkout.pays_on_due_date(tenant)
            payments = []
            for _ in range(PAYMENTS):
                async with http.post(
                    f"{url}/v1/checkout/sessions",
                    json={
                        "order_id": f"ord_{uuid.uuid4().hex[:8]}",
                        "amount": {"value": 5000, "currency": "EUR"},
                        "buyer_account": "acc_1",
                        "payment_option": "BANK_WIRE_ON_DUE_DATE",
                        "lines": [
                            {
                                "logistic_order_id": "lo_1",
                                "supplier_id": tenant.suppliers[0],
                                "amount": 5000,
                            }
                        ],
                    },
                    headers={
                        "Authorization": f"Bearer {tenant.storefront_key}",
                        "Idempotency-Key": uuid.uuid4().hex,
                    },
                ) as response:
                    assert response.status == 201, await response.text()
                    payments.append(await response.json())
            # when the OMS reports them shipped (both replicas consume checkout.shipments)
            oms = await channel.get_exchange(broker_names.exchange(OMS_EXCHANGE))
            shipped_at = datetime.now(UTC) - timedelta(days=40)
            for body in payments:
                order_id = await first[DB_POOL].fetchval(
                    "SELECT order_id FROM payments WHERE id = $1", body["data"]["id"]
                )
                event = {
                    "id": str(uuid.uuid4()),
                    "tenant_id": tenant.id,
                    "order_id": order_id,
                    "logistic_order_id": "lo_1",
                    "supplier_id": tenant.suppliers[0],
                    "status": "SHIPPED",
                    "occurred_at": shipped_at.isoformat(),
                }
                await oms.publish(
                    aio_pika.Message(json.dumps(event).encode(), content_type="application/json"),
                    routing_key=OMS_STATUS_CHANGED,
                )

            # then each is flagged, by one replica or the other, once
            async def all_flagged() -> bool:
                return len(received) >= PAYMENTS

            await eventually(all_flagged, within=30)
            await asyncio.sleep(1.0)  # many more scheduler ticks on both replicas
            ids = {body["data"]["id"] for body in payments}
            per_payment = Counter(m["data"]["payment_id"] for m in received)
            assert set(per_payment) == ids
            assert set(per_payment.values()) == {1}
            assert {m["data"]["remaining"]["value"] for m in received} == {5000}
            async with first[DB_POOL].acquire() as conn:
                entries = await conn.fetch(
                    "SELECT payment_id, count(*) AS n FROM payment_timeline"
                    " WHERE kind = 'bank_transfer_overdue' GROUP BY payment_id"
                )
            assert {r["payment_id"]: r["n"] for r in entries} == dict.fromkeys(ids, 1)
            # and the admin API lists them as overdue
            async with http.get(
                f"{url}/v1/admin/bank-transfers/overdue?limit=100",
                headers={"Authorization": f"Bearer {tenant.operator_key}"},
            ) as response:
                assert response.status == 200
                listed = (await response.json())["data"]
            assert {p["id"] for p in listed} == ids
            assert all(p["bank_transfer"]["overdue"] for p in listed)
        finally:
            await asyncio.wait_for(amqp.close(), 10)
