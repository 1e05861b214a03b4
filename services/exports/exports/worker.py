"""The export worker: every replica runs one; together they share the jobs.

A job is claimed with FOR UPDATE SKIP LOCKED (a new `attempt` each time) and leased: the
worker renews the lease with each progress heartbeat. If the worker dies, the lease runs out
and another replica claims the job again. The file is streamed from PostgreSQL with `COPY
(SELECT ...) TO STDOUT` inside one REPEATABLE READ, read-only transaction (the count and the
rows see one snapshot) straight into the storage writer, chunk by chunk, so memory stays flat
whatever the row count. Each attempt writes its own object and the job completes with a fenced
UPDATE (`WHERE attempt = mine AND status = 'RUNNING'`) in the transaction that enqueues
`export.ready`: a job completes once, with one file, whatever crashed in between; a late
attempt that lost its job deletes its own file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from common.broker.outbox import publish_event
from common.db.pool import connection_lost
from common.events import EventType
from common.logging import get_logger
from exports import repo
from exports.domain import FILTERS, ready_event, rows_in, storage_key
from exports.metrics import ExportMetrics
from exports.settings import Settings
from exports.storage import Storage, StorageWriter

log = get_logger("exports.worker")


class LeaseLostError(Exception):
    """Another replica took the job over (this one was too slow to renew its lease)."""


@dataclass
class Progress:
    lines: int = 0
    total: int | None = None
    lost: bool = False

    @property
    def rows(self) -> int:
        written = max(self.lines - 1, 0)  # the header line is not a row
        return written if self.total is None else min(written, self.total)


class ExportWorker:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        storage: Storage,
        settings: Settings,
        metrics: ExportMetrics | None = None,
    ) -> None:
        self.pool = pool
        self.metrics = metrics
        self.storage = storage
        self.settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._wake = asyncio.Event()
        self._jobs: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        next_sweep = 0.0
        try:
            while True:
                try:
                    if time.monotonic() >= next_sweep:
                        await self.expire_due()
                        next_sweep = time.monotonic() + self.settings.expiry_sweep_interval_s
                    await self.claim_and_start()
                except Exception as exc:
                    log.warning("export worker round failed", error=repr(exc))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.worker_poll_interval_s):
                        await self._wake.wait()
                self._wake.clear()
        finally:
            for job in self._jobs:
                job.cancel()
            if self._jobs:
                await asyncio.wait(self._jobs, timeout=5)

    async def claim_and_start(self) -> None:
        free = self.settings.worker_concurrency - len(self._jobs)
        if free <= 0:
            return
        async with self.pool.acquire() as conn:
            claimed = await repo.claim(conn, self.owner, self.settings.lease_s, free)
        for job in claimed:
            task = asyncio.create_task(self.produce(job), name=f"export:{job['id']}")
            self._jobs.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._jobs.discard(task)
        self._wake.set()  # a slot is free

    async def produce(self, job: asyncpg.Record) -> None:
        try:
            await self._produce(job)
        except Exception as exc:
            # e.g. the database went away while completing: the lease runs out and another
            # attempt follows (a completion that did commit stays: the job is READY)
            log.warning("export attempt ended in error", export_id=job["id"], error=repr(exc))

    async def _produce(self, job: asyncpg.Record) -> None:
        export_id: str = job["id"]
        attempt: int = job["attempt"]
        kind: str = job["export_type"]
        started = time.monotonic()
        if attempt > self.settings.max_attempts:
            async with self.pool.acquire() as conn:
                await repo.fail_exhausted(conn, export_id, attempt)
            log.warning("export failed: attempts exhausted", export_id=export_id)
            self._count(kind, "failed")
            return
        key = storage_key(job["tenant_id"], export_id, attempt)
        progress = Progress()
        heartbeat = asyncio.create_task(self._heartbeat(export_id, attempt, progress))
        writer: StorageWriter | None = None
        try:
            writer = self.storage.writer(key)  # a local writer opens its file: inside the try
            rows, size = await self._write(job, progress, writer)
        except LeaseLostError:
            heartbeat.cancel()
            if writer is not None:
                await writer.abort()
            log.info("export attempt lost its lease", export_id=export_id, attempt=attempt)
            self._count(kind, "lease_lost")
            return
        except asyncio.CancelledError:
            # shutting down: hand the job back so another replica takes it over now (if this
            # fails, the lease runs out and the same happens later)
            heartbeat.cancel()
            if writer is not None:
                await writer.abort()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2), self.pool.acquire() as conn:
                    await repo.hand_back(conn, export_id, attempt)
            raise
        except Exception as exc:
            heartbeat.cancel()
            if writer is not None:
                await writer.abort()
            await self._failed(export_id, attempt, exc)
            self._count(kind, "failed")
            return
        heartbeat.cancel()
        async with self.pool.acquire() as conn, conn.transaction():
            done = await repo.complete(
                conn,
                export_id,
                attempt,
                rows=rows,
                size_bytes=size,
                storage_key=key,
                retention_s=self.settings.retention_s,
            )
            if done is not None:
                await publish_event(
                    conn,
                    EventType.EXPORT_READY,
                    ready_event(
                        export_id,
                        done["export_type"],
                        rows,
                        done["completed_at"],
                        timedelta(seconds=self.settings.retention_s),
                    ),
                    tenant_id=done["tenant_id"],
                    aggregate_id=export_id,
                )
        if done is None:
            log.info("export attempt lost its job before completing", export_id=export_id)
            self._count(kind, "superseded")
            await self.storage.delete(key)
            return
        self._count(kind, "ready")
        if self.metrics is not None:
            self.metrics.rows.labels(kind).inc(rows)
            self.metrics.duration.labels(kind).observe(time.monotonic() - started)
        for earlier in range(1, attempt):  # what a dead attempt left behind
            await self.storage.delete(storage_key(job["tenant_id"], export_id, earlier))
        log.info("export ready", export_id=export_id, rows=rows, bytes=size, attempt=attempt)

    def _count(self, kind: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.attempts.labels(kind, outcome).inc()

    async def _write(
        self, job: asyncpg.Record, progress: Progress, writer: StorageWriter
    ) -> tuple[int, int]:
        filters = FILTERS[job["export_type"]].model_validate(job["filters"])
        query = repo.export_query(
            job["export_type"],
            filters,
            tenant_id=job["tenant_id"],
            supplier_scope=job["supplier_scope"],
        )
        throttle = self.settings.throttle_bytes_per_s
        written = 0
        started = time.monotonic()

        async def output(chunk: bytes) -> None:
            nonlocal written
            if progress.lost:
                raise LeaseLostError(job["id"])
            await writer.write(chunk)
            progress.lines += rows_in(chunk)
            written += len(chunk)
            if throttle is not None:
                ahead = written / throttle - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)

        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            progress.total = await conn.fetchval(query.count, *query.args)
            status = await conn.copy_from_query(
                query.select,
                *query.args,
                output=output,
                format="csv",
                delimiter=";",
                header=True,
                encoding="UTF8",
            )
        rows = int(status.split()[-1])
        size = await writer.commit()
        return rows, size

    async def _heartbeat(self, export_id: str, attempt: int, progress: Progress) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                async with self.pool.acquire() as conn:
                    held = await repo.heartbeat(
                        conn,
                        export_id,
                        attempt,
                        self.settings.lease_s,
                        progress.rows,
                        progress.total,
                    )
            except Exception as exc:
                # the lease is still ours until it runs out; the next beat tries again
                log.warning("export heartbeat failed", export_id=export_id, error=repr(exc))
                continue
            if not held:
                progress.lost = True
                return

    async def _failed(self, export_id: str, attempt: int, exc: Exception) -> None:
        final = attempt >= self.settings.max_attempts and not connection_lost(exc)
        log.warning("export attempt failed", export_id=export_id, attempt=attempt, error=repr(exc))
        try:
            async with self.pool.acquire() as conn:
                await repo.release(
                    conn,
                    export_id,
                    attempt,
                    retry_in_s=None if final else self.settings.retry_delay_s,
                    error_code="export_failed",
                    error_message=type(exc).__name__,
                )
        except Exception as again:
            # the lease runs out and another attempt follows: nothing is lost
            log.warning("export release failed", export_id=export_id, error=repr(again))

    async def expire_due(self) -> int:
        async with self.pool.acquire() as conn:
            expired = await repo.expire_due(conn)
        for row in expired:
            if row["storage_key"]:
                await self.storage.delete(row["storage_key"])
        if self.metrics is not None and expired:
            self.metrics.expired.inc(len(expired))
        return len(expired)
