"""Checkout's own OMS queue (`checkout.shipments`): malformed OMS events are parked in its DLQ
with the reason (no retry can fix them); only a SHIPPED of a bank-transfer payment costs a
transaction."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika

from common.events import OMS_EXCHANGE, OMS_STATUS_CHANGED
from common.http.app import METRICS
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


async def test_only_a_shipped_event_of_a_bank_transfer_payment_opens_a_transaction(
    checkout, servers, broker_names
):
    # given a bank-transfer payment, and OMS events about it and about an order checkout
    # doesn't know (as a card payment's line is, for this queue)
    tenant, order_id, payment_id = await bank_transfer_payment(checkout)
    base = {
        "tenant_id": tenant.id,
        "logistic_order_id": "lo_1",
        "supplier_id": tenant.suppliers[0],
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    delivered = {**base, "id": str(uuid.uuid4()), "order_id": order_id, "status": "DELIVERED"}
    elsewhere = {**base, "id": str(uuid.uuid4()), "order_id": "ord_x", "status": "SHIPPED"}
    shipped = {**base, "id": str(uuid.uuid4()), "order_id": order_id, "status": "SHIPPED"}
    connection = await aio_pika.connect(servers.amqp_url)
    async with connection:
        channel = await connection.channel()
        oms = await channel.get_exchange(broker_names.exchange(OMS_EXCHANGE))
        # when they arrive, in this order
        for body in (delivered, elsewhere, shipped):
            await oms.publish(
                aio_pika.Message(json.dumps(body).encode(), content_type="application/json"),
                routing_key=OMS_STATUS_CHANGED,
            )
    # then the bank-transfer payment's SHIPPED went through the inbox (a transaction) and
    # fixed its due date; the two before it were acknowledged without one
    pool = checkout.app[DB_POOL]

    async def due_date_set() -> bool:
        return bool(
            await pool.fetchval(
                "SELECT due_date IS NOT NULL FROM bank_transfers WHERE payment_id = $1",
                payment_id,
            )
        )

    await eventually(due_date_set)
    inbox = {
        str(row["message_id"])  # the OMS event's id: a UUID, the inbox message id as it is
        for row in await pool.fetch(
            "SELECT message_id FROM inbox WHERE queue = 'checkout.shipments'"
        )
    }
    assert shipped["id"] in inbox
    assert not {delivered["id"], elsewhere["id"]} & inbox
    metrics = checkout.app[METRICS].registry
    assert (
        metrics.get_sample_value(
            "consumer_messages_total", {"queue": "checkout.shipments", "outcome": "not_for_us"}
        )
        == 2
    )


async def bank_transfer_payment(checkout) -> tuple[Any, str, str]:
    """A tenant and a BANK_WIRE_ON_DUE_DATE payment of one line (lo_1): its order and id."""
    tenant = await checkout.new_tenant(suppliers=1)
    await checkout.pays_on_due_date(tenant)
    order_id = f"ord_{uuid.uuid4().hex[:8]}"
    response = await checkout.http.post(
        f"{checkout.url}/v1/checkout/sessions",
        json={
            "order_id": order_id,
            "amount": {"value": 5000, "currency": "EUR"},
            "buyer_account": "acc_1",
            "payment_option": "BANK_WIRE_ON_DUE_DATE",
            "lines": [
                {"logistic_order_id": "lo_1", "supplier_id": tenant.suppliers[0], "amount": 5000}
            ],
        },
        headers={
            "Authorization": f"Bearer {tenant.storefront_key}",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    assert response.status == 201, await response.text()
    return tenant, order_id, (await response.json())["data"]["id"]
