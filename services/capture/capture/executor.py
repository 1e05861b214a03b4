"""The two background loops of every capture replica.

`CaptureExecutor` sends due captures to the PSP: it claims them in one statement
(`FOR UPDATE SKIP LOCKED`, a lease), calls the PSP outside any transaction with the capture's
deterministic idempotency key, and records the answer in a second transaction (the answers
that arrived meanwhile together, one commit for all). It wakes on `NOTIFY captures_<schema>`
(sent by a trigger when a capture becomes due, from any replica) and, when all its slots were
taken, when one of its own calls finishes; it polls as a fallback. Up to `capture_concurrency`
PSP calls are in flight per replica.

`Scheduler` turns due DELAYED schedules into captures, a batch per transaction, also with
`FOR UPDATE SKIP LOCKED`, so replicas share the schedules and none is done twice.

Both read time from the injected clock, so a test advances it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import datetime, timedelta
from typing import cast

import asyncpg

from capture import schedules, sending
from capture.clock import Clock
from capture.domain import Claim, Lease, PspAnswer
from capture.metrics import CaptureMetrics
from capture.repo import PgRepo
from capture.settings import Settings
from common.broker.consumer import after_commit, can_defer_after_commit
from common.db.pool import reset_session
from common.logging import correlation, get_logger, new_correlation_id
from common.psp.port import PspPort
from common.wakeup import Wakeup

log = get_logger("capture.executor")

RECORD_BACKOFF_MAX_S = 5.0
RECORD_BATCH = 50


class CaptureExecutor:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        psp: PspPort,
        clock: Clock,
        settings: Settings,
        metrics: CaptureMetrics,
    ) -> None:
        self._pool = pool
        self._psp = psp
        self._clock = clock
        self._schema = settings.db_schema
        self._lease = timedelta(seconds=settings.capture_lease_s)
        self._retry_delays = [timedelta(seconds=s) for s in settings.capture_retry_delays_s]
        self._concurrency = settings.capture_concurrency
        self._poll_interval = settings.capture_poll_interval_s
        self._metrics = metrics
        self._wakeup = Wakeup()
        self._tasks: set[asyncio.Task[None]] = set()
        self._answers: list[tuple[Claim, PspAnswer]] = []
        self._answered = asyncio.Event()
        self._full = False  # every slot was taken when the loop last went to sleep
        self._running = False

    def wake(self) -> None:
        self._wakeup.set()

    def send(self, claim: Claim) -> None:
        """Send a capture leased elsewhere on this replica (created leased by a consumer, after
        its commit), as if this executor had claimed it. Not running: nothing is done, the
        lease expires and a claim sends it then."""
        if not self._running:
            return
        task = asyncio.create_task(self._process(claim))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    async def run(self) -> None:
        """Send forever; on a failure (the database gone) back off and start again."""
        backoff = 0.2
        recorder = asyncio.create_task(self._recorder(), name="capture-recorder")
        self._running = True
        try:
            while True:
                try:
                    await self._listen_and_send()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("capture executor interrupted", error=repr(exc), retry_in_s=backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                else:
                    backoff = 0.2
        finally:
            self._running = False
            for task in [*self._tasks, recorder]:
                task.cancel()
            for task in [*self._tasks, recorder]:
                with contextlib.suppress(BaseException):
                    await task

    async def _listen_and_send(self) -> None:
        channel = f"captures_{self._schema}"
        async with self._pool.acquire() as listener:
            await listener.add_listener(channel, self._wakeup.set)
            try:
                while True:
                    free = self._concurrency - len(self._tasks)
                    if free > 0:
                        claims = await self._claim(free)
                        for claim in claims:
                            task = asyncio.create_task(self._process(claim))
                            self._tasks.add(task)
                            task.add_done_callback(self._finished)
                        if len(claims) == free:
                            continue  # more may be due: claim again once a slot frees up
                    self._full = free <= 0
                    await self._sleep()
            finally:
                # no LISTEN left on a pooled connection (common.db is typed for a Connection;
                # the pool's proxy behaves as one)
                await reset_session(cast("asyncpg.Connection[asyncpg.Record]", listener))

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._full:  # captures may be waiting for this slot; else nothing new is due
            self._wakeup.set()

    async def _sleep(self) -> None:
        await self._wakeup.sleep(self._poll_interval)

    async def _claim(self, limit: int) -> list[Claim]:
        async with self._pool.acquire() as conn:
            claims: list[Claim] = await sending.claim(
                PgRepo(conn), now=self._clock(), lease=self._lease, limit=limit
            )
        return claims

    async def _process(self, claim: Claim) -> None:
        with correlation(new_correlation_id(), capture_id=claim.capture_id):
            started = time.perf_counter()
            answer = await sending.send(self._psp, claim)
            self._metrics.psp_duration.observe(time.perf_counter() - started)
            self._metrics.psp_calls.labels(type(answer).__name__.lower()).inc()
        self._answers.append((claim, answer))
        self._answered.set()

    async def _recorder(self) -> None:
        """Record the answers gathered while the previous batch committed, one transaction
        for a batch, skipping the captures another transaction holds; those, and every
        answer of a batch that failed, are recorded each on its own (with retries)."""
        while True:
            await self._answered.wait()
            self._answered.clear()
            while self._answers:
                batch = self._answers[:RECORD_BATCH]
                del self._answers[:RECORD_BATCH]
                try:
                    async with self._pool.acquire() as conn, conn.transaction():
                        busy = await sending.record_answers(
                            PgRepo(conn),
                            batch,
                            now=self._clock(),
                            retry_delays=self._retry_delays,
                            metrics=self._metrics,
                            skip_busy=True,
                        )
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("recording a batch of answers failed", error=repr(exc))
                    busy = batch
                # one capture per transaction: waiting for its lock cannot close a cycle
                await asyncio.gather(*(self._record(c, a) for c, a in busy))

    async def _record(self, claim: Claim, answer: PspAnswer) -> None:
        """Record the answer; while the database is unreachable keep trying until the lease
        is nearly over. Giving up is safe: the lease expires and the capture is sent again
        under the same key, and the PSP answers it with this same answer."""
        deadline = time.monotonic() + self._lease.total_seconds() * 0.8
        backoff = 0.1
        while True:
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    await sending.record_answers(
                        PgRepo(conn),
                        [(claim, answer)],
                        now=self._clock(),
                        retry_delays=self._retry_delays,
                        metrics=self._metrics,
                    )
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if time.monotonic() + backoff > deadline:
                    log.error(
                        "could not record a PSP answer; the capture will be sent again under"
                        " the same key when its lease expires",
                        error=repr(exc),
                    )
                    return
                log.warning("recording a PSP answer failed, retrying", error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RECORD_BACKOFF_MAX_S)


class SendAfterCommit:
    """`oms.Sender` for the consumers: a capture created inside a consumer's transaction is
    leased to this replica's executor and sent once that transaction commits. The executor is
    set when it starts and unset before it stops; without it, nothing is leased."""

    def __init__(self, settings: Settings) -> None:
        self.executor: CaptureExecutor | None = None
        self._lease = timedelta(seconds=settings.capture_lease_s)

    def lease(self, now: datetime) -> Lease | None:
        if self.executor is None or not can_defer_after_commit():
            return None
        return Lease(token=uuid.uuid4(), until=now + self._lease, started_at=now)

    def send_after_commit(self, claim: Claim) -> None:
        after_commit(lambda: self._send(claim))

    def _send(self, claim: Claim) -> None:
        if self.executor is not None:  # else the lease expires and a claim sends it
            self.executor.send(claim)


class Scheduler:
    def __init__(self, *, pool: asyncpg.Pool, clock: Clock, settings: Settings) -> None:
        self._pool = pool
        self._clock = clock
        self._poll_interval = settings.scheduler_poll_interval_s
        self._batch = settings.scheduler_batch_size
        self._wakeup = Wakeup()

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            due = 0
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    due = await schedules.run_due_schedules(
                        PgRepo(conn), now=self._clock(), limit=self._batch
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("capture scheduler pass failed", error=repr(exc))
            if due < self._batch:
                await self._wakeup.sleep(self._poll_interval)
