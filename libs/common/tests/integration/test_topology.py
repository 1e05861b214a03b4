"""The queues a consumer declares (DESIGN §3): a durable quorum queue with a dead-letter queue,
and retry queues whose TTL sends a message back to the main queue."""

import asyncio
import time

import aio_pika
import pytest
from aiormq.exceptions import ChannelPreconditionFailed

from common.broker import QueueSpec, declare_queue
from common.broker.topology import all_queue_names
from common.events import DOMAIN_EXCHANGE


@pytest.fixture
async def plain_connection(servers):
    # Not robust: a channel the broker closes on purpose here must not be restored.
    connection = await aio_pika.connect(servers.amqp_url)
    yield connection
    await connection.close()


SPEC = QueueSpec("topo", [(DOMAIN_EXCHANGE, "topo.*")], retry_delays_ms=(200, 400))


async def get_within(queue, within: float = 10.0) -> aio_pika.abc.AbstractIncomingMessage:
    deadline = time.monotonic() + within
    while (message := await queue.get(fail=False)) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing arrived in {queue.name} within {within} s")
        await asyncio.sleep(0.05)
    return message


async def test_every_queue_is_a_durable_quorum_queue_with_its_dead_letter_route(
    plain_connection, broker_names
):
    # given
    channel = await plain_connection.channel()
    await declare_queue(channel, broker_names, SPEC)
    main, dlq = broker_names.queue("topo"), broker_names.queue("topo.dlq")
    dlx = broker_names.exchange("marketpay.dlx")
    expected = {
        main: {
            "x-dead-letter-exchange": dlx,
            "x-dead-letter-routing-key": dlq,
            "x-delivery-limit": 10,
        },
        dlq: {},
        broker_names.queue("marketpay.retry.200ms"): {
            "x-message-ttl": 200,
            "x-dead-letter-exchange": "",
        },
        broker_names.queue("marketpay.retry.400ms"): {
            "x-message-ttl": 400,
            "x-dead-letter-exchange": "",
        },
    }
    assert sorted(all_queue_names(broker_names, SPEC)) == sorted(expected)

    for name, arguments in expected.items():
        # when declared again with the same arguments, as a quorum queue: accepted
        same = broker_names.queue_arguments({**arguments, "x-queue-type": "quorum"})
        await (await plain_connection.channel()).declare_queue(name, durable=True, arguments=same)
        # when declared again as a classic queue: refused, the existing queue is a quorum queue
        classic = broker_names.queue_arguments({**arguments, "x-queue-type": "classic"})
        with pytest.raises(ChannelPreconditionFailed, match="inequivalent arg 'x-queue-type'"):
            await (await plain_connection.channel()).declare_queue(
                name, durable=True, arguments=classic
            )

    # and declaring the topology again is harmless
    await declare_queue(channel, broker_names, SPEC)
    await channel.close()


async def test_a_rejected_message_is_dead_lettered_to_the_dlq(plain_connection, broker_names):
    # given
    channel = await plain_connection.channel()
    queue = await declare_queue(channel, broker_names, SPEC)
    events = await channel.get_exchange(broker_names.exchange(DOMAIN_EXCHANGE))
    await events.publish(aio_pika.Message(b"{}", message_id="m1"), routing_key="topo.x")

    # when
    message = await get_within(queue)
    await message.reject(requeue=False)

    # then
    dlq = await channel.declare_queue(broker_names.queue(SPEC.dlq), passive=True)
    parked = await get_within(dlq)
    assert parked.message_id == "m1"
    await parked.ack()
    await channel.close()


async def test_a_retry_tier_sends_the_message_back_after_its_delay(plain_connection, broker_names):
    # given
    channel = await plain_connection.channel()
    queue = await declare_queue(channel, broker_names, SPEC)
    tier = await channel.get_exchange(broker_names.exchange(SPEC.retry_tier(2)))

    # when a message for this queue waits in the second delay tier (400 ms)
    sent = time.monotonic()
    await tier.publish(aio_pika.Message(b"{}", message_id="m2"), routing_key=queue.name)

    # then it comes back to the main queue, not before its delay
    back = await get_within(queue)
    assert back.message_id == "m2"
    assert time.monotonic() - sent >= 0.35
    await back.ack()
    await channel.close()
