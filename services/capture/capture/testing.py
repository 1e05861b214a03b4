"""Test helpers for suites that drive the capture service: a clock a test can move, and the
OMS's side of the contract (a bare `logistic_order.status_changed` body on `oms.events`)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika


def logistic_order_event(
    *,
    tenant_id: str,
    order_id: str,
    logistic_order_id: str,
    supplier_id: str,
    status: str = "SHIPPED",
    event_id: str | None = None,
) -> dict[str, Any]:
    return {
        "id": event_id or str(uuid.uuid4()),
        "tenant_id": tenant_id,
        "order_id": order_id,
        "logistic_order_id": logistic_order_id,
        "supplier_id": supplier_id,
        "status": status,
        "occurred_at": datetime.now(UTC).isoformat(),
    }


async def publish_oms(
    amqp_url: str, exchange_name: str, body: dict[str, Any] | bytes, routing_key: str
) -> None:
    """Publish as the OMS does: JSON, persistent, with publisher confirms."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(exchange_name)
        await exchange.publish(
            aio_pika.Message(
                raw,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=routing_key,
        )
