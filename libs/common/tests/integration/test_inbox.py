"""The inbox consumer against the real servers (DESIGN §2, invariants 3 and 9): one effect per
message id, retries with growing delays, then the DLQ with the error; poison never blocks."""

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field

import aio_pika
import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage

from common.broker import InboxConsumer, Names, QueueSpec
from common.broker.consumer import (
    Batched,
    after_commit,
    can_defer_after_commit,
    event_codes,
    one_by_one,
)
from common.events import DOMAIN_EXCHANGE, Envelope, EventType, make_envelope
from common.logging import current_correlation_id
from common.metrics import Metrics
from common.testing.events import Probe, probe_type
from common.testing.waiting import eventually

EVENT = probe_type("probe.happened")
OTHER = probe_type("probe.unhandled")
SINGLE = probe_type("probe.single")
SPEC = QueueSpec("probe", [(DOMAIN_EXCHANGE, "probe.*")], retry_delays_ms=(200, 400))


@dataclass
class Harness:
    pool: asyncpg.Pool
    channel: aio_pika.abc.AbstractChannel
    names: Names
    metrics: Metrics = field(default_factory=Metrics)
    calls: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)  # label → times to raise first

    committed: list[str] = field(default_factory=list)  # after_commit callbacks run
    consumer: InboxConsumer | None = None
    batches: list[list[str]] = field(default_factory=list)  # the labels of each `Batched` call
    correlations: list[str | None] = field(default_factory=list)

    async def handle_together(self, conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
        self.batches.append([e.data["label"] for e in envelopes])
        for envelope in one_by_one(envelopes):
            self.correlations.append(current_correlation_id())
            await self.handle(conn, envelope)

    async def handle(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        label = envelope.data["label"]
        self.calls[label] = self.calls.get(label, 0) + 1
        await conn.execute("INSERT INTO effects (label) VALUES ($1)", label)
        after_commit(lambda: self.committed.append(label))
        if self.failures.get(label, 0) > 0:
            self.failures[label] -= 1
            raise RuntimeError(f"handler broke on {label}")

    async def send(self, body: bytes | Envelope, *, message_id: str | None = None) -> None:
        if isinstance(body, Envelope):
            message_id = message_id or str(body.id)
            routing_key, raw = body.type, body.model_dump_json().encode()
        else:
            routing_key, raw = EVENT, body
        exchange = await self.channel.get_exchange(self.names.exchange(DOMAIN_EXCHANGE))
        await exchange.publish(
            aio_pika.Message(raw, message_id=message_id, content_type="application/json"),
            routing_key=routing_key,
        )

    async def effects(self, label: str) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM effects WHERE label = $1", label))

    def count(self, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "consumer_messages_total", {"queue": SPEC.name, "outcome": outcome}
        )
        return value or 0.0

    async def next_dead_letter(self, within: float = 10.0) -> AbstractIncomingMessage:
        dlq = await self.channel.declare_queue(self.names.queue(SPEC.dlq), passive=True)
        deadline = time.monotonic() + within
        while (message := await dlq.get(no_ack=True, fail=False)) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing in {SPEC.dlq} within {within} s")
            await asyncio.sleep(0.05)
        return message

    async def dlq_depth(self) -> int:
        dlq = await self.channel.declare_queue(self.names.queue(SPEC.dlq), passive=True)
        return dlq.declaration_result.message_count or 0


@contextlib.asynccontextmanager
async def harness(
    pool,
    connection,
    names,
    *,
    batch_size: int = 1,
    accepts=None,
    needs=None,
    batched: bool = False,
) -> AsyncIterator[Harness]:
    await pool.execute("CREATE TABLE effects (id bigserial PRIMARY KEY, label text NOT NULL)")
    channel = await connection.channel()
    result = Harness(pool, channel, names)
    consumer = InboxConsumer(
        pool=pool,
        connection=connection,
        names=names,
        spec=SPEC,
        handlers=(
            {EVENT: Batched(result.handle_together), SINGLE: result.handle}
            if batched
            else {EVENT: result.handle}
        ),
        metrics=result.metrics,
        batch_size=batch_size,
        accepts=accepts,
        needs=needs,
    )
    result.consumer = consumer
    await consumer.start()
    try:
        yield result
    finally:
        await consumer.stop()
        await channel.close()


def event(label: str, event_type: EventType = EVENT, correlation_id: str = "c1") -> Envelope:
    return make_envelope(
        event_type, Probe(label=label), tenant_id="t1", correlation_id=correlation_id
    )


@pytest.mark.parametrize("batch_size", [1, 10])
async def test_the_same_message_delivered_three_times_has_one_effect(
    service_pool, amqp_connection, broker_names, batch_size
):
    async with harness(service_pool, amqp_connection, broker_names, batch_size=batch_size) as h:
        # given
        once = event("once")

        # when
        for _ in range(3):
            await h.send(once)

        # then
        await eventually(lambda: _true(h.count("applied") + h.count("duplicate") == 3))
        assert h.count("applied") == 1
        assert await h.effects("once") == 1


async def test_a_handler_that_keeps_failing_is_retried_then_parked_in_the_dlq_with_its_error(
    service_pool, amqp_connection, broker_names
):
    async with harness(service_pool, amqp_connection, broker_names) as h:
        # given a handler that fails every time on this message
        h.failures["doomed"] = 100
        doomed = event("doomed")

        # when
        await h.send(doomed)

        # then: the first attempt and the two retries ran, then the message was parked
        parked = await h.next_dead_letter()
        assert parked.message_id == str(doomed.id)
        assert json.loads(parked.body)["id"] == str(doomed.id)
        headers = parked.headers or {}
        assert "RuntimeError: handler broke on doomed" in str(headers["x-error"])
        assert headers["x-error-kind"] == "handler_error"
        assert headers["x-attempt"] == 2
        assert h.calls["doomed"] == 3
        assert await h.effects("doomed") == 0


@pytest.mark.parametrize("batch_size", [1, 10])
async def test_a_handler_that_fails_once_then_succeeds_is_applied_exactly_once(
    service_pool, amqp_connection, broker_names, batch_size
):
    async with harness(service_pool, amqp_connection, broker_names, batch_size=batch_size) as h:
        # given a flaky handler for one message, sent between two good ones
        h.failures["flaky"] = 1

        # when
        for label in ("before", "flaky", "after"):
            await h.send(event(label))

        # then every message has one effect, the flaky one after a retry
        await eventually(lambda: _eq(h.effects("flaky"), 1))
        await eventually(lambda: _true(h.count("applied") == 3))
        assert [await h.effects(label) for label in ("before", "flaky", "after")] == [1, 1, 1]
        assert h.calls["flaky"] == 2
        assert await h.dlq_depth() == 0
        # and each message's after_commit callback ran once, after its commit: the failed
        # attempt (and, in a batch, the rolled-back batch) ran none
        await asyncio.sleep(0.3)
        assert sorted(h.committed) == ["after", "before", "flaky"]
        assert not can_defer_after_commit()  # outside a consumer's transaction


async def test_malformed_json_goes_to_the_dlq_and_the_next_message_is_processed(
    service_pool, amqp_connection, broker_names
):
    async with harness(service_pool, amqp_connection, broker_names) as h:
        # given
        good = event("good")

        # when
        await h.send(b'{"id": "not even json', message_id=str(uuid.uuid4()))
        await h.send(good)

        # then
        await eventually(lambda: _eq(h.effects("good"), 1))
        parked = await h.next_dead_letter()
        assert parked.body == b'{"id": "not even json'
        assert (parked.headers or {})["x-error-kind"] == "poison"
        assert "not a Marketpay event envelope" in str((parked.headers or {})["x-error"])


async def test_a_message_of_a_type_without_handler_goes_to_the_dlq(
    service_pool, amqp_connection, broker_names
):
    async with harness(service_pool, amqp_connection, broker_names) as h:
        # given
        stray = event("stray", event_type=OTHER)

        # when
        await h.send(stray)

        # then
        parked = await h.next_dead_letter()
        assert parked.message_id == str(stray.id)
        assert (parked.headers or {})["x-error-kind"] == "poison"
        assert "no handler for event type 'probe.unhandled'" in str(
            (parked.headers or {})["x-error"]
        )
        assert h.calls == {}


async def test_a_batch_applies_messages_in_delivery_order_in_one_go(
    service_pool, amqp_connection, broker_names
):
    async with harness(service_pool, amqp_connection, broker_names, batch_size=50) as h:
        # given many messages, a duplicate among them
        labels = [f"m{i:03d}" for i in range(200)]
        envelopes = [event(label) for label in labels]

        # when
        for envelope in [*envelopes[:100], envelopes[50], *envelopes[100:]]:
            await h.send(envelope)

        # then each is applied once, in the order sent
        await eventually(lambda: _true(h.count("applied") == 200))
        order = await service_pool.fetch("SELECT label FROM effects ORDER BY id")
        assert [r["label"] for r in order] == labels
        await eventually(lambda: _true(h.count("duplicate") == 1))


async def test_a_batch_is_acknowledged_whole_and_nothing_comes_back_after_a_restart(
    service_pool, amqp_connection, broker_names
):
    def wanted(envelope: Envelope) -> bool:
        return not str(envelope.data["label"]).startswith("skip")

    async with harness(
        service_pool, amqp_connection, broker_names, batch_size=10, accepts=wanted
    ) as h:
        # given batches acknowledged with one `multiple` ack each, with messages acknowledged
        # on their own (not accepted) between them
        labels = [f"{'skip' if i % 7 == 3 else 'm'}{i:03d}" for i in range(95)]
        for label in labels:
            await h.send(event(label))
        await eventually(lambda: _true(h.count("applied") + h.count("not_for_us") == 95))
        # when the consumer stops (its channel closes: what it did not acknowledge goes back
        # to the queue) and starts again
        assert h.consumer is not None
        await h.consumer.stop()
        queue = await h.channel.declare_queue(h.names.queue(SPEC.name), passive=True)
        assert queue.declaration_result.message_count == 0
        await h.consumer.start()
        await asyncio.sleep(0.5)
        # then nothing was delivered again: every message was acknowledged once
        assert h.count("duplicate") == 0
        assert h.count("applied") == sum(not x.startswith("skip") for x in labels)
        assert sum(h.calls.values()) == h.count("applied")


@pytest.mark.parametrize("batch_size", [1, 10])
async def test_messages_the_queue_does_not_accept_are_acked_without_touching_the_database(
    service_pool, amqp_connection, broker_names, batch_size
):
    def wanted(envelope: Envelope) -> bool:
        return str(envelope.data["label"]).startswith("keep")

    async with harness(
        service_pool, amqp_connection, broker_names, batch_size=batch_size, accepts=wanted
    ) as h:
        # given messages of which the queue wants only some
        labels = ["keep-1", "skip-1", "keep-2", "skip-2", "skip-3", "keep-3"]

        # when they arrive
        for label in labels:
            await h.send(event(label))

        # then the wanted ones are applied in order, the others only acknowledged: no handler
        # call, no inbox row, nothing left in the queue or parked
        await eventually(lambda: _true(h.count("applied") + h.count("not_for_us") == 6))
        assert (h.count("applied"), h.count("not_for_us")) == (3, 3)
        assert h.calls == {"keep-1": 1, "keep-2": 1, "keep-3": 1}
        assert await service_pool.fetchval("SELECT count(*) FROM inbox") == 3
        assert await h.dlq_depth() == 0


@pytest.mark.parametrize("batch_size", [1, 10])
async def test_messages_the_database_says_are_not_needed_are_acked_without_a_transaction(
    service_pool, amqp_connection, broker_names, batch_size
):
    await service_pool.execute("CREATE TABLE wanted (label text PRIMARY KEY)")
    await service_pool.execute("INSERT INTO wanted VALUES ('keep-1'), ('keep-2'), ('keep-3')")
    asked: list[list[str]] = []

    async def needs(conn: asyncpg.Connection, envelopes: list[Envelope]) -> list[bool]:
        labels = [str(e.data["label"]) for e in envelopes]
        asked.append(labels)
        assert not conn.is_in_transaction()
        found = {
            r["label"]
            for r in await conn.fetch("SELECT label FROM wanted WHERE label = ANY($1)", labels)
        }
        return [label in found for label in labels]

    async with harness(
        service_pool, amqp_connection, broker_names, batch_size=batch_size, needs=needs
    ) as h:
        assert h.consumer is not None
        await h.consumer.stop()
        # given messages waiting, of which the database knows only some: a batch of those it
        # doesn't know alone, and batches that mix them
        labels = ["skip-1", "skip-2", "keep-1", "skip-3", "keep-2", "keep-3", "skip-4"]
        for label in labels:
            await h.send(event(label))

        # when the consumer takes them
        await h.consumer.start()

        # then the needed ones are applied in order, the others only acknowledged: no handler
        # call, no inbox row, nothing left in the queue or parked
        await eventually(lambda: _true(h.count("applied") + h.count("not_for_us") == 7))
        assert (h.count("applied"), h.count("not_for_us")) == (3, 4)
        order = await service_pool.fetch("SELECT label FROM effects ORDER BY id")
        assert [r["label"] for r in order] == ["keep-1", "keep-2", "keep-3"]
        assert await service_pool.fetchval("SELECT count(*) FROM inbox") == 3
        assert await h.dlq_depth() == 0
        assert [label for batch in asked for label in batch] == labels
        # and nothing is delivered again once the consumer restarts
        await h.consumer.stop()
        await h.consumer.start()
        await asyncio.sleep(0.5)
        assert (h.count("applied"), h.count("not_for_us")) == (3, 4)


async def test_a_batched_handler_gets_consecutive_messages_together_in_delivery_order(
    service_pool, amqp_connection, broker_names
):
    async with harness(
        service_pool, amqp_connection, broker_names, batch_size=50, batched=True
    ) as h:
        # given messages waiting in the queue: batched ones, a duplicate, and every tenth of
        # a type with a plain handler between them
        assert h.consumer is not None
        await h.consumer.stop()
        kinds = [(f"m{i:03d}", SINGLE if i % 10 == 9 else EVENT) for i in range(120)]
        envelopes = [event(label, kind, correlation_id=f"c-{label}") for label, kind in kinds]
        for envelope in [*envelopes[:60], envelopes[30], *envelopes[60:]]:
            await h.send(envelope)

        # when the consumer takes them
        await h.consumer.start()

        # then each is applied once, in the order sent
        await eventually(lambda: _true(h.count("applied") == 120))
        order = await service_pool.fetch("SELECT label FROM effects ORDER BY id")
        assert [r["label"] for r in order] == [label for label, _ in kinds]
        await eventually(lambda: _true(h.count("duplicate") == 1))
        # the batched ones in runs of up to nine (a plain message ends a run), never the
        # duplicate, each under its own correlation id
        batched = [label for label, kind in kinds if kind == EVENT]
        assert [label for run in h.batches for label in run] == batched
        assert max(len(run) for run in h.batches) == 9
        assert len(h.batches) < len(batched) / 2
        assert h.correlations == [f"c-{label}" for label in batched]


async def test_a_failing_batched_message_is_retried_alone_and_the_others_applied_once(
    service_pool, amqp_connection, broker_names
):
    async with harness(
        service_pool, amqp_connection, broker_names, batch_size=50, batched=True
    ) as h:
        # given a batch with one message whose handling fails twice, then succeeds
        assert h.consumer is not None
        await h.consumer.stop()
        labels = [f"m{i:02d}" for i in range(20)]
        h.failures["m07"] = 2  # in the batch, then alone; its retry succeeds
        for label in labels:
            await h.send(event(label))

        # when the consumer takes them
        await h.consumer.start()

        # then the batch was rolled back and applied one message at a time, the failing
        # one again after its delay: every message has exactly one effect
        await eventually(lambda: _true(h.count("applied") == 20))
        assert h.count("retried") == 1
        for label in labels:
            assert await h.effects(label) == 1
        assert ["m07"] in h.batches[1:]
        assert h.committed.count("m07") == 1


async def _true(value: bool) -> bool:
    return value


async def _eq(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


def test_event_codes_accepts_the_named_codes_and_leaves_a_payload_without_one_to_the_handler():
    accepts = event_codes("REFUND", "REFUND_FAILED")

    def notification(data: dict[str, object]) -> Envelope:
        return Envelope.model_validate(
            {
                **event("x").model_dump(mode="json"),
                "type": "psp.notification.received",
                "data": data,
            }
        )

    assert accepts(notification({"event_code": "REFUND"}))
    assert not accepts(notification({"event_code": "CAPTURE"}))
    assert accepts(notification({}))  # the handler refuses it, to the DLQ with the reason
