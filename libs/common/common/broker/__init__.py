"""RabbitMQ: topology, the transactional outbox and its relay, and the inbox consumer."""

from common.broker.consumer import Handler, InboxConsumer, PoisonMessageError
from common.broker.outbox import (
    OutboxRelay,
    enqueue,
    enqueue_many,
    new_envelope,
    publish_event,
    publish_events,
)
from common.broker.topology import Names, QueueSpec, connect, declare_exchanges, declare_queue

__all__ = [
    "Handler",
    "InboxConsumer",
    "Names",
    "OutboxRelay",
    "PoisonMessageError",
    "QueueSpec",
    "connect",
    "declare_exchanges",
    "declare_queue",
    "enqueue",
    "enqueue_many",
    "new_envelope",
    "publish_event",
    "publish_events",
]
