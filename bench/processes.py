"""What the benchmarks share: services run as child processes (so that no process takes CPU
from another's event loop, and each one's CPU can be read per request), scratch databases and
schemas removed at the end, and events published on the bus as the producing services would;
the sandbox's webhooks routed to a webhooks process, and the run's queues deleted after it."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import aiohttp
import asyncpg

from bench.profile import STATS_FILE_ENV, Statements, enable_server_statements, read_statements
from common.broker import Names, QueueSpec
from common.broker.topology import all_queue_names
from common.testing.fixtures import ServiceDb, TestDatabase, dsn_with

START_TIMEOUT_S = 30.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


async def until_terminated() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def tell_url(url: str) -> None:
    """A child's answer to its parent: the URL it serves on."""
    target = Path(os.environ["BENCH_URL_FILE"])
    partial = target.with_suffix(".partial")
    partial.write_text(url)
    partial.rename(target)


async def serve_service(service: str) -> None:
    """In a child: run a Marketpay service (`<service>.app.create_app`) with the MARKETPAY_*
    settings the parent gave it, until terminated; then delete the queues it declared."""
    import importlib

    from bench.profile import install_statement_log
    from common.broker import Names
    from common.logging import configure_logging
    from common.runtime import freeze_startup_objects
    from common.testing.apps import running
    from common.testing.fixtures import delete_namespace

    install_statement_log()  # when the parent asked for statement counters
    create_app = importlib.import_module(f"{service}.app").create_app
    settings = importlib.import_module(f"{service}.settings").Settings()
    configure_logging(settings.service_name, settings.log_level)
    try:
        async with running(create_app(settings), outbox_log=False) as url:
            freeze_startup_objects()  # as `common.runtime.serve` does in a deployed service
            tell_url(url)
            await until_terminated()
    finally:
        # the queues this process declared are known only here (declared_test_queues)
        names = Names(settings.broker_namespace, settings.broker_queue_expires_ms)
        await delete_namespace(settings.amqp_url.get_secret_value(), names)


async def serve_sandbox() -> None:
    """In a child: the PSP sandbox, with the company API key the parent gave it."""
    from common.logging import configure_logging
    from psp_sandbox.testing import running_sandbox

    configure_logging("psp_sandbox", "WARNING")
    async with running_sandbox(
        company_api_key=os.environ["BENCH_COMPANY_KEY"],
        freeze_state_interval_s=1.0,  # a process of its own, as deployed
    ) as sandbox:
        tell_url(sandbox.url)
        await until_terminated()


@dataclass
class Child:
    process: asyncio.subprocess.Process
    url: str
    statements_file: Path | None = None

    async def statements(self) -> Statements:
        """The child's SQL statements so far (started with `statements=True`)."""
        assert self.statements_file is not None, "started without statement counters"
        return await read_statements(self.process.pid, self.statements_file)

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> Callable[[], None]:
    """For `preexec_fn`: the child gets SIGTERM when the benchmark dies, however it dies (a
    killed benchmark used to leave its services running, polling a database nobody would
    drop). Linux's `PR_SET_PDEATHSIG`; elsewhere a no-op."""

    def set_up() -> None:
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return set_up


@contextlib.asynccontextmanager
async def child(
    module: str, role: str, env: dict[str, str], *, statements: bool = False
) -> AsyncIterator[Child]:
    """`python -m module role` as a child; its logs go to /dev/null (to `<role>.log` in
    `BENCH_LOG_DIR` when set), its URL comes back in a file. `BENCH_PROFILE_<ROLE>=path` runs
    it under cProfile. `statements`: a service child counts its SQL statements
    (`Child.statements`, see bench.profile)."""
    log_dir = os.environ.get("BENCH_LOG_DIR")
    logs = asyncio.subprocess.DEVNULL
    if log_dir:
        logs = os.open(Path(log_dir) / f"{role}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    with tempfile.TemporaryDirectory(prefix="bench_") as scratch:
        url_file = Path(scratch) / "url"
        statements_file = Path(scratch) / "statements.json" if statements else None
        if statements_file is not None:
            env = {**env, STATS_FILE_ENV: str(statements_file)}
        profile = os.environ.get(f"BENCH_PROFILE_{role.upper()}")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *(["-m", "cProfile", "-o", profile] if profile else []),
            "-m",
            module,
            role,
            env={**os.environ, **env, "BENCH_URL_FILE": str(url_file)},
            stdout=logs,
            preexec_fn=die_with_parent(os.getpid()),
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not url_file.exists():
                if process.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{role} did not start (exit {process.returncode})")
                await asyncio.sleep(0.05)
            yield Child(process, url_file.read_text().strip(), statements_file)
        finally:
            if log_dir:
                os.close(logs)
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), 20)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def route_webhooks(
    http: aiohttp.ClientSession,
    sandbox_url: str,
    webhooks_url: str,
    merchant_account: str,
    operator_key: str,
) -> None:
    """The sandbox sends `merchant_account`'s PSP webhooks to the webhooks service at
    `webhooks_url`, which the tenant's operator gives the HMAC key they are signed with."""
    async with http.post(
        f"{sandbox_url}/sandbox/merchant-accounts",
        json={
            "merchant_account": merchant_account,
            "webhook_url": f"{webhooks_url}/v1/webhooks/psp/adyen",
        },
    ) as response:
        hmac_key = (await response.json())["hmac_key"]
    async with http.put(
        f"{webhooks_url}/v1/admin/webhooks/hmac-keys",
        json={"merchant_account": merchant_account, "key": hmac_key},
        headers={"Authorization": f"Bearer {operator_key}"},
    ) as response:
        assert response.status == 201, await response.text()


async def delete_queues(amqp_url: str, names: Names, queues: Iterable[str]) -> None:
    """Delete `queues` of the namespace `names` (with their retry and dead-letter queues), which
    the parent declared or bound for its services."""
    connection = await aio_pika.connect(amqp_url, timeout=10)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            for name in all_queue_names(names, QueueSpec(queue, [])):
                await channel.queue_delete(name)


@contextlib.asynccontextmanager
async def autovacuum_on(admin_dsn: str) -> AsyncIterator[None]:
    """Autovacuum on while a benchmark runs, as PostgreSQL ships it and production runs it. A
    server configured without it (test servers often are) never refreshes the statistics of
    the tables a benchmark fills, so cached plans chosen while they were empty keep scanning
    them as they grow, and deleted rows (the outbox's) are never reclaimed: costs that grow
    with the run, not with the code. The server's own setting is put back at the end."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        turned_on = False
        if await admin.fetchval("SHOW autovacuum") != "on":
            try:
                await admin.execute("ALTER SYSTEM SET autovacuum = on")
                await admin.execute("SELECT pg_reload_conf()")
                turned_on = True
                print("  autovacuum: on for the benchmark (the server has it off)", flush=True)
            except asyncpg.InsufficientPrivilegeError:
                print("  autovacuum: off on this server, and not ours to turn on", flush=True)
    finally:
        await admin.close()
    try:
        yield
    finally:
        if turned_on:
            admin = await asyncpg.connect(admin_dsn)
            try:
                await admin.execute("ALTER SYSTEM RESET autovacuum")
                await admin.execute("SELECT pg_reload_conf()")
            finally:
                await admin.close()


@contextlib.asynccontextmanager
async def scratch_services(admin_dsn: str, *labels: str) -> AsyncIterator[dict[str, ServiceDb]]:
    """A database of its own with a schema and role per label, dropped at the end, with
    autovacuum on meanwhile (`autovacuum_on`)."""
    async with autovacuum_on(admin_dsn), _scratch_services(admin_dsn, *labels) as services:
        yield services


@contextlib.asynccontextmanager
async def _scratch_services(admin_dsn: str, *labels: str) -> AsyncIterator[dict[str, ServiceDb]]:
    name = f"marketpay_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    await enable_server_statements(admin_dsn, name)
    database = TestDatabase(name=name, admin_dsn=dsn_with(admin_dsn, database=name))
    try:
        yield {label: await database.new_service_db(label) for label in labels}
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for role in database.roles:
                with contextlib.suppress(asyncpg.PostgresError):
                    await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def scratch_database(admin_dsn: str) -> AsyncIterator[ServiceDb]:
    """A database and one service schema of their own, dropped at the end."""
    async with scratch_services(admin_dsn, "bench") as services:
        yield services["bench"]
