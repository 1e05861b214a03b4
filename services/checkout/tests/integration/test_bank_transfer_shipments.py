"""Checkout's own OMS queue (`checkout.shipments`): malformed OMS events are parked in its DLQ
with the reason (no retry can fix them); only a SHIPPED costs a transaction."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import aio_pika

from common.events import OMS_EXCHANGE, OMS_STATUS_CHANGED
from common.runtime import DB_POOL
from common.testing.waiting import eventually


async def test_malformed_oms_events_go_to_the_shipments_dlq_with_the_reason(
    checkout, servers, broker_names
):
    # given
    good = {
        "id": str(uuid.uuid4()),
        "tenant_id": "ten_x",
        "order_id": "ord_x",
        "logistic_order_id": "lo_1",
        "supplier_id": "sup_x",
        "status": "SHIPPED",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    nul = {**good, "id": str(uuid.uuid4()), "order_id": "ord\x00x"}
    connection = await aio_pika.connect(servers.amqp_url)
    async with connection:
        channel = await connection.channel()
        oms = await channel.get_exchange(broker_names.exchange(OMS_EXCHANGE))
        # when two poison messages come before a good one (not a bank-transfer order: ignored)
        for body in (b"{not json", json.dumps(nul).encode(), json.dumps(good).encode()):
            await oms.publish(
                aio_pika.Message(body, content_type="application/json"),
                routing_key=OMS_STATUS_CHANGED,
            )
        # then the two are parked with their reason
        parked: list[tuple[bytes, dict]] = []

        async def both_parked() -> bool:
            dlq = await channel.get_queue(broker_names.queue("checkout.shipments.dlq"))
            while (message := await dlq.get(no_ack=True, fail=False)) is not None:
                parked.append((message.body, dict(message.headers or {})))
            return len(parked) == 2

        await eventually(both_parked)
    assert parked[0][0] == b"{not json"
    assert all(
        str(h["x-error"]).startswith("not a valid logistic_order.status_changed event")
        for _, h in parked
    )


async def test_only_a_shipped_event_opens_a_transaction(checkout, servers, broker_names):
    # given an OMS event of another status, then a SHIPPED, for an order checkout doesn't know
    base = {
        "tenant_id": "ten_x",
        "order_id": "ord_x",
        "logistic_order_id": "lo_1",
        "supplier_id": "sup_x",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    delivered = {**base, "id": str(uuid.uuid4()), "status": "DELIVERED"}
    shipped = {**base, "id": str(uuid.uuid4()), "status": "SHIPPED"}
    connection = await aio_pika.connect(servers.amqp_url)
    async with connection:
        channel = await connection.channel()
        oms = await channel.get_exchange(broker_names.exchange(OMS_EXCHANGE))
        # when both arrive, in this order
        for body in (delivered, shipped):
            await oms.publish(
                aio_pika.Message(json.dumps(body).encode(), content_type="application/json"),
                routing_key=OMS_STATUS_CHANGED,
            )
    # then the SHIPPED went through the inbox (a transaction, found nothing to do), and the
    # DELIVERED before it was acknowledged without one
    pool = checkout.app[DB_POOL]

    async def handled() -> bool:
        ids = {
            str(row["message_id"])
            for row in await pool.fetch(
                "SELECT message_id FROM inbox WHERE queue = 'checkout.shipments'"
            )
        }
        return shipped["id"] in ids  # a UUID: the inbox message id as it is

    await eventually(handled)
    assert not await pool.fetchval(
        "SELECT count(*) FROM inbox WHERE message_id::text = $1", delivered["id"]
    )
