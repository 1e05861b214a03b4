"""Group commit: the writes of concurrent requests coalesced into one transaction.

One commit costs a WAL flush (DESIGN §14: a few hundred commits per second per connection on
these disks), so a service that must store each request durably before answering cannot commit
once per request and still keep up. `GroupCommit.submit(items)` queues one request's items and
waits; a writer task takes everything queued at that moment (nothing waits for a timer: at low
load a batch is one request, under load it is whatever arrived while the previous batch was
committing), applies it with `apply(conn, items)` in one transaction, and answers each request
with its own results once that transaction has committed.

A batch that fails for another reason than the database being unreachable is applied again
one request per transaction, so a request whose items cannot be stored fails alone. When the
database is unreachable every waiting request gets `StorageUnavailableError`: it was not
stored, and the caller says so (a 503 the sender retries).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import asyncpg

from common.db.notify_after_commit import transaction_notifying_after_commit
from common.db.pool import CONNECTION_ERRORS, connection_lost
from common.db.types import Conn
from common.logging import get_logger

log = get_logger("marketpay.group_commit")

T = TypeVar("T")
R = TypeVar("R")

Apply = Callable[[Conn, Sequence[T]], Awaitable[Sequence[R]]]


class StorageUnavailableError(Exception):
    """The database could not be reached: nothing of the request was stored."""


@dataclass
class _Submission(Generic[T, R]):
    items: Sequence[T]
    done: asyncio.Future[list[R]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        pool: asyncpg.Pool,
        apply: Apply[T, R],
        *,
        max_items: int = 500,
        writers: int = 1,
        acquire_timeout_s: float = 5.0,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        """`apply` stores a batch and returns one result per item, in order. `writers`
        transactions may be in flight at once; `on_batch(requests, items)` observes each
        committed batch (metrics)."""
        if max_items < 1 or writers < 1:
            raise ValueError("max_items and writers must be at least 1")
        self._pool = pool
        self._apply = apply
        self._max_items = max_items
        self._writers = writers
        self._acquire_timeout_s = acquire_timeout_s
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Submission[T, R]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._write(), name=f"group-commit-{i}")
            for i in range(self._writers)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.done.done():
                pending.done.set_exception(StorageUnavailableError("shutting down"))

    async def submit(self, items: Sequence[T]) -> list[R]:
        """Store `items` (all in one transaction) and return their results once committed."""
        if not self._tasks:
            raise RuntimeError("GroupCommit.submit before start()")
        if not items:
            return []
        submission: _Submission[T, R] = _Submission(items)
        self._queue.put_nowait(submission)
        # shielded: a caller that goes away does not take the others' batch down with it
        return await asyncio.shield(submission.done)

    async def _write(self) -> None:
        while True:
            batch = [await self._queue.get()]
            size = len(batch[0].items)
            while not self._queue.empty() and size < self._max_items:
                submission = self._queue.get_nowait()
                batch.append(submission)
                size += len(submission.items)
            try:
                await self._commit(batch)
            except asyncio.CancelledError:
                _fail(batch, StorageUnavailableError("shutting down"))
                raise
            except Exception as exc:  # never let one batch stop the writer
                log.exception("group commit failed")
                _fail(batch, exc)

    async def _commit(self, batch: list[_Submission[T, R]]) -> None:
        try:
            results = await self._transaction([item for s in batch for item in s.items])
        except StorageUnavailableError as exc:
            _fail(batch, exc)
            return
        except Exception as exc:
            if len(batch) == 1:
                _fail(batch, exc)
                return
            log.info("batch failed, storing its requests one by one", error=repr(exc))
            for submission in batch:
                await self._commit([submission])
            return
        start = 0
        for submission in batch:
            end = start + len(submission.items)
            if not submission.done.done():
                submission.done.set_result(list(results[start:end]))
            start = end
        if self._on_batch is not None:
            self._on_batch(len(batch), start)

    async def _transaction(self, items: list[T]) -> Sequence[R]:
        try:
            conn = await self._pool.acquire(timeout=self._acquire_timeout_s)
        except CONNECTION_ERRORS as exc:
            raise StorageUnavailableError("cannot reach the database") from exc
        try:
            async with transaction_notifying_after_commit(conn):
                results = await self._apply(conn, items)
        except Exception as exc:
            if connection_lost(exc, conn):
                raise StorageUnavailableError("the database connection broke") from exc
            raise
        finally:
            with contextlib.suppress(Exception):
                await self._pool.release(conn)
        if len(results) != len(items):
            raise RuntimeError(f"apply returned {len(results)} results for {len(items)} items")
        return results


def _fail(batch: Sequence[_Submission[T, R]], exc: BaseException) -> None:
    for submission in batch:
        if not submission.done.done():
            submission.done.set_exception(exc)
