"""Inspect and replay a dead-letter queue.

    python scripts/dlq.py list checkout.psp-notifications        # show parked messages
    python scripts/dlq.py replay checkout.psp-notifications      # move them back to the queue

A replayed message keeps its message id, so a message that had in fact been applied is skipped
by the inbox; its retry count starts again. AMQP URL from MARKETPAY_AMQP_URL (default: local),
names prefixed by MARKETPAY_BROKER_NAMESPACE.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os

import aio_pika

from common.broker.consumer import ATTEMPT_HEADER

AMQP_URL = os.environ.get("MARKETPAY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
NAMESPACE = os.environ.get("MARKETPAY_BROKER_NAMESPACE", "")


async def run(action: str, queue_name: str, limit: int) -> int:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        dlq = await channel.get_queue(f"{NAMESPACE}{queue_name}.dlq", ensure=True)
        handled = 0
        while handled < limit:
            message = await dlq.get(no_ack=False, fail=False)
            if message is None:
                break
            headers = dict(message.headers or {})
            if action == "list":
                print(
                    json.dumps(
                        {
                            "message_id": message.message_id,
                            "type": message.type,
                            "error": headers.get("x-error"),
                            "kind": headers.get("x-error-kind"),
                            "failed_at": headers.get("x-failed-at"),
                            "body": message.body.decode(errors="replace")[:500],
                        }
                    )
                )
                handled += 1  # left unacknowledged: back in the DLQ when the channel closes
                continue
            for key in [k for k in headers if k.startswith("x-")]:
                headers.pop(key)
            headers[ATTEMPT_HEADER] = 0
            await channel.default_exchange.publish(
                aio_pika.Message(
                    body=message.body,
                    message_id=message.message_id,
                    content_type=message.content_type,
                    correlation_id=message.correlation_id,
                    type=message.type,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    headers=headers,
                ),
                routing_key=f"{NAMESPACE}{queue_name}",
            )
            await message.ack()
            handled += 1
        print(f"{action}: {handled} message(s)")
        return handled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["list", "replay"])
    parser.add_argument("queue", help="the consuming queue, without .dlq")
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(run(args.action, args.queue, args.limit))


if __name__ == "__main__":
    main()
