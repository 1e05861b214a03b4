"""Publish a logistic-order status event as the OMS does (docs/oms-contract.md).

Usage:
  .venv/bin/python scripts/publish_oms_event.py --tenant TEN --order ORD \\
      --logistic-order LO --supplier SUP [--status SHIPPED] [--id EVENT_ID]

Publishes one JSON body to the durable topic exchange `oms.events` with routing key
`logistic_order.status_changed`, persistent, and waits for the broker's confirm. The broker is
MARKETPAY_AMQP_URL (default: the local RabbitMQ of `make up`), and the exchange's name starts
with MARKETPAY_BROKER_NAMESPACE when that is set, as the services' do. Sending the same --id
again is how an OMS redelivers: the capture service applies each event id once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
from datetime import UTC, datetime

import aio_pika

EXCHANGE = "oms.events"
ROUTING_KEY = "logistic_order.status_changed"
STATUSES = (
    "WAITING_SHIPMENT",
    "PARTIALLY_SHIPPED",
    "SHIPPED",
    "COMPLETED",
    "CANCELED",
    "DECLINED_BY_SUPPLIER",
)


async def publish(amqp_url: str, exchange_name: str, body: dict[str, str]) -> None:
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        # the OMS owns this exchange; declaring it is harmless when it exists already
        exchange = await channel.declare_exchange(
            exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        await exchange.publish(
            aio_pika.Message(
                json.dumps(body).encode(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=body["id"],
            ),
            routing_key=ROUTING_KEY,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenant", required=True, help="the tenant id (ten_...)")
    parser.add_argument("--order", required=True, help="the order id of the checkout session")
    parser.add_argument("--logistic-order", required=True, help="the line's logistic_order_id")
    parser.add_argument("--supplier", required=True, help="the line's supplier_id")
    parser.add_argument("--status", default="SHIPPED", help=f"e.g. {', '.join(STATUSES)}")
    parser.add_argument("--id", default=None, help="the event id (default: a new UUID)")
    namespaced = os.environ.get("MARKETPAY_BROKER_NAMESPACE", "") + EXCHANGE
    parser.add_argument(
        "--exchange",
        default=namespaced,
        help=f"default {EXCHANGE}, after MARKETPAY_BROKER_NAMESPACE as the services name it",
    )
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("MARKETPAY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
    )
    args = parser.parse_args(argv)
    body = {
        "id": args.id or str(uuid.uuid4()),
        "tenant_id": args.tenant,
        "order_id": args.order,
        "logistic_order_id": args.logistic_order,
        "supplier_id": args.supplier,
        "status": args.status,
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    try:
        asyncio.run(publish(args.amqp_url, args.exchange, body))
    except (OSError, aio_pika.exceptions.AMQPError) as exc:
        print(f"could not publish to RabbitMQ: {exc!r}", file=sys.stderr)
        return 1
    print(json.dumps(body, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
