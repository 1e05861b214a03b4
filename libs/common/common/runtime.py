"""The service skeleton: start-up and shutdown of a service's resources, as aiohttp cleanup
contexts, and the one `main()` every service's `__main__` calls.

A service starts, applies its migrations (under the advisory lock), connects to RabbitMQ,
declares its topology, starts its outbox relay and its consumers, and only then serves:

    app = create_base_app(api, Metrics())
    app.cleanup_ctx.append(runtime.database(settings, "checkout", MIGRATIONS))
    app.cleanup_ctx.append(tenancy.replica_authentication())      # common.tenancy
    app.cleanup_ctx.append(runtime.psp_adapter(settings, PSP))
    app.cleanup_ctx.append(runtime.broker(settings, consumptions))  # relay + consumers
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import asyncpg
import uvloop
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from pydantic import SecretStr

from common.broker.consumer import (
    Accepts,
    Batched,
    Handler,
    InboxConsumer,
    Needs,
    Parser,
    event_codes,
    parse_envelope,
)
from common.broker.outbox import OutboxRelay
from common.broker.topology import Names, QueueSpec, connect, declare_exchanges
from common.config import ServiceSettings
from common.db.migrations import COMMON_MIGRATIONS, apply_migrations
from common.db.pool import create_pool, reset_session
from common.events import EventType, notification_bindings
from common.http.app import METRICS, READINESS
from common.http.idempotency import IdempotencyStore
from common.http.routing import IDEMPOTENCY
from common.logging import configure_logging, get_logger
from common.psp.adyen import AdyenAdapter, AdyenConfig
from common.psp.port import PspPort

log = get_logger("marketpay.runtime")

DB_POOL = web.AppKey("db_pool", asyncpg.Pool)
BROKER = web.AppKey("broker", AbstractRobustConnection)
RELAY = web.AppKey("relay", OutboxRelay)
CONSUMERS = web.AppKey("consumers", list[InboxConsumer])
SHUTDOWN_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Consumption:
    spec: QueueSpec
    handlers: Mapping[str, Handler | Batched] | Mapping[EventType, Handler | Batched]
    parser: Parser = parse_envelope  # e.g. the OMS's bare JSON events
    accepts: Accepts | None = None  # the messages the handlers act on (the rest: acked)
    needs: Needs | None = None  # the same, asked of the database for a batch (`InboxConsumer`)


def notification_consumption(
    name: str, handler: Handler | Batched, codes: Sequence[str]
) -> Consumption:
    """A queue of the PSP notifications whose event codes are `codes`: bound to those codes
    (`notification_bindings`) and to the bare key, whose messages it filters by the same codes
    (`event_codes`), so that the two lists can't drift apart."""
    return Consumption(
        spec=QueueSpec(name=name, bindings=notification_bindings(*codes)),
        handlers={EventType.PSP_NOTIFICATION_RECEIVED: handler},
        accepts=event_codes(*codes),
    )


def database(
    settings: ServiceSettings, component: str, migrations: Path
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        pool = await create_pool(
            settings.database_url.get_secret_value(),
            settings.db_schema,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
        )
        async with pool.acquire() as conn:
            applied = await apply_migrations(
                conn, settings.db_schema, {"common": COMMON_MIGRATIONS, component: migrations}
            )
            await reset_session(conn)  # whatever a migration file SET stays out of the pool
        if applied:
            log.info("migrations applied", applied=applied)
        app[DB_POOL] = pool
        app[IDEMPOTENCY] = IdempotencyStore(pool)

        async def database_reachable() -> None:
            async with pool.acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1")

        app[READINESS].append(database_reachable)
        purge = asyncio.create_task(_purge_idempotency_keys(app[IDEMPOTENCY]))
        yield
        purge.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await purge
        await _close_pool(pool)

    return ctx


async def _purge_idempotency_keys(store: IdempotencyStore) -> None:
    while True:
        with contextlib.suppress(Exception):
            await store.purge_expired()
        await asyncio.sleep(3600)


async def _close_pool(pool: asyncpg.Pool) -> None:
    """Close gracefully; a connection stuck on a dead server must not hang the shutdown."""
    try:
        async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
            await pool.close()
    except TimeoutError:
        log.warning("database pool did not close in time; terminating it")
        pool.terminate()


def broker(
    settings: ServiceSettings, consumptions: Sequence[Consumption] = ()
) -> Callable[[web.Application], AsyncIterator[None]]:
    """Connect, declare, run the outbox relay and the consumers (needs `database` first)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        names = Names(settings.broker_namespace, settings.broker_queue_expires_ms)
        connection = await connect(settings.amqp_url.get_secret_value())
        channel = await connection.channel()
        await declare_exchanges(channel, names)
        await channel.close()
        app[BROKER] = connection
        relay = OutboxRelay(
            pool=app[DB_POOL],
            connection=connection,
            names=names,
            schema=settings.db_schema,
            metrics=app[METRICS],
            poll_interval=settings.outbox_poll_interval_s,
        )
        app[RELAY] = relay
        relay_task = asyncio.create_task(relay.run(), name="outbox-relay")
        consumers = [
            InboxConsumer(
                pool=app[DB_POOL],
                connection=connection,
                names=names,
                spec=c.spec,
                handlers=c.handlers,
                parser=c.parser,
                prefetch=settings.consumer_prefetch,
                batch_size=settings.consumer_batch_size,
                metrics=app[METRICS],
                accepts=c.accepts,
                needs=c.needs,
            )
            for c in consumptions
        ]
        for consumer in consumers:
            await consumer.start()
        app[CONSUMERS] = consumers

        async def broker_reachable() -> None:
            if connection.is_closed or not connection.connected.is_set():
                raise ConnectionError("RabbitMQ connection is down")

        app[READINESS].append(broker_reachable)
        yield
        for consumer in consumers:
            await bounded(consumer.stop(), f"consumer {consumer.queue}")
        relay_task.cancel()
        await bounded(relay_task, "outbox relay")
        try:
            async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
                await connection.close()
        except TimeoutError:
            log.warning("RabbitMQ connection did not close in time")

    return ctx


async def bounded(work: Awaitable[object] | asyncio.Task[object], what: str) -> None:
    """Wait for `work` at most SHUTDOWN_TIMEOUT_S, then give up on it (logged), so that one
    stuck piece cannot hang a shutdown. Unlike `wait_for`, it does not then wait for the
    cancelled work to finish."""
    task = work if isinstance(work, asyncio.Task) else asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=SHUTDOWN_TIMEOUT_S)
    if not done:
        task.cancel()
        log.warning("shutdown step did not finish in time; abandoned", step=what)
        return
    if not task.cancelled() and task.exception() is not None:
        log.warning("shutdown step failed", step=what, error=repr(task.exception()))


class PspSettings(Protocol):
    @property
    def psp_base_url(self) -> str: ...
    @property
    def psp_api_key(self) -> SecretStr | None: ...
    @property
    def psp_timeout_s(self) -> float: ...


def psp_adapter(
    settings: PspSettings, key: web.AppKey[PspPort], *, max_attempts: int | None = None
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The PSP adapter under `app[key]`, started and closed with the application.
    `max_attempts=1`: the caller retries durably itself (capture's executor)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if settings.psp_api_key is None:
            raise RuntimeError("MARKETPAY_PSP_API_KEY is required")
        config = AdyenConfig(
            base_url=settings.psp_base_url,
            api_key=settings.psp_api_key,
            timeout_s=settings.psp_timeout_s,
        )
        if max_attempts is not None:
            config = config.model_copy(update={"max_attempts": max_attempts})
        adapter = AdyenAdapter(config)
        await adapter.start()
        app[key] = adapter
        yield
        await adapter.close()

    return ctx


class HttpSettings(Protocol):
    @property
    def service_name(self) -> str: ...
    @property
    def log_level(self) -> str: ...
    @property
    def http_host(self) -> str: ...
    @property
    def http_port(self) -> int: ...


S = TypeVar("S", bound=HttpSettings)
T = TypeVar("T")


def main(settings_type: Callable[[], S], create_app: Callable[[S], web.Application]) -> None:
    """Every service's entry point: settings from the environment, JSON logging, serve."""
    settings = settings_type()
    configure_logging(settings.service_name, settings.log_level)
    serve(create_app(settings), settings)


def freeze_startup_objects() -> None:
    """Put what start-up left alive (modules, models, routes, pools: ~95,000 objects in a
    service) out of the cyclic garbage collector's reach. A full collection otherwise walks
    them all every time, 40-70 ms during which every request and message in flight waits.
    After this it walks only what the service allocated since. Once per service process,
    after start-up; not in a process that starts many applications (a test run), where
    what it froze would never be collected."""
    gc.collect()
    gc.freeze()


async def _freeze_after_startup(app: web.Application) -> None:
    freeze_startup_objects()


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop a service process runs on: uvloop's (libuv, in C). Every message and
    request goes through the loop's scheduling and its transports several times (a consumed
    message: the broker's frames, the statements' round trips, the relay's publish and
    confirm), and uvloop does that work in C where asyncio's default loop does it in Python.
    Tests run the services in-process on pytest's loop, the default one; the deployed
    processes and the benchmarks' service children run on this one."""
    return uvloop.new_event_loop()


def run_on_service_loop(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on the loop a service process runs on (`new_event_loop`)."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(main)


def serve(
    app: web.Application, settings: HttpSettings, *, shutdown_timeout: float = SHUTDOWN_TIMEOUT_S
) -> None:
    # after the cleanup contexts' start-up (pools, broker, replicas), which run first
    app.on_startup.append(_freeze_after_startup)
    web.run_app(
        app,
        loop=new_event_loop(),
        host=settings.http_host,
        port=settings.http_port,
        access_log=None,
        print=None,
        shutdown_timeout=shutdown_timeout,
    )
