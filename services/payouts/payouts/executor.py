"""The payout executor and the payout scheduler, both safe with N replicas.

Executor: claims due PENDING / UNKNOWN payouts (`FOR UPDATE SKIP LOCKED`, then leased by
moving `next_poll_at`), asks the provider about the payout's order and creates it when the
provider does not know it (the order id is ours, so a create after a crash or a timeout finds
the first order), then applies the answer in a transaction of its own. The provider's callback
takes the same path for one payout. UNKNOWN payouts past the configured age enter the
intervention queue; they stay UNKNOWN.

Scheduler: for each tenant, the latest due slot of its schedule is claimed by inserting it into
`schedule_runs`; the replica whose insert wins computes the period's payouts and executes them
in the same transaction. Two replicas: one run per slot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

import asyncpg

from common.http.errors import ApiError
from common.logging import get_logger
from common.tenancy import tenant_settings
from payouts import payout_cases
from payouts.domain import latest_slot
from payouts.provider import (
    PayoutProvider,
    ProviderOrder,
    ProviderRefusedError,
    ProviderUnavailableError,
)
from payouts.settings import Settings

log = get_logger("payouts.executor")
Clock = Callable[[], datetime]


class PayoutExecutor:
    def __init__(
        self, *, pool: asyncpg.Pool, provider: PayoutProvider, settings: Settings, clock: Clock
    ) -> None:
        self._pool = pool
        self._provider = provider
        self._settings = settings
        self._clock = clock
        self._wake = asyncio.Event()
        self._limit = asyncio.Semaphore(settings.executor_concurrency)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self.retry_failed()
                claimed = await self.claim()
                await self.escalate()
                if claimed:
                    await asyncio.gather(*(self._guarded(row) for row in claimed))
                    continue
            except Exception as exc:  # the database went away: try again later
                log.warning("executor pass failed", error=repr(exc))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.executor_poll_interval_s)

    async def _guarded(self, row: asyncpg.Record) -> None:
        async with self._limit:
            try:
                await self.step(row["id"], row["provider_reference"])
            except Exception as exc:  # the lease runs out and another pass tries again
                log.warning("payout step failed", payout_id=row["id"], error=repr(exc))

    async def claim(self, limit: int = 50) -> list[asyncpg.Record]:
        now = self._clock()
        async with self._pool.acquire() as conn, conn.transaction():
            return list(
                await conn.fetch(
                    "UPDATE payouts SET next_poll_at = $2 WHERE id IN ("
                    " SELECT id FROM payouts WHERE status IN ('PENDING', 'UNKNOWN')"
                    " AND next_poll_at <= $1 ORDER BY next_poll_at"
                    " LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING id, provider_reference",
                    now,
                    now + timedelta(seconds=self._settings.claim_lease_s),
                    limit,
                )
            )

    async def retry_failed(self) -> int:
        """The tenant's retry policy (`payout_schedule.retry_attempts`): a FAILED payout is sent
        again as a new order, `payout_retry_delay_s` after it failed, until its attempts are
        spent; then it waits for an operator. A retry that cannot be made (its orders in a
        newer payout, the money no longer available) is left to the operator too."""
        cutoff = self._clock() - timedelta(seconds=self._settings.payout_retry_delay_s)
        async with self._pool.acquire() as conn:
            due = await conn.fetch(
                "SELECT p.id, p.tenant_id FROM payouts p JOIN replica_tenants t USING (tenant_id)"
                " WHERE p.status = 'FAILED' AND p.updated_at <= $1 AND p.auto_retry"
                " AND p.attempt < coalesce((t.data->'payout_schedule'->>'retry_attempts')::int, 0)"
                " ORDER BY p.updated_at LIMIT 50",
                cutoff,
            )
        retried = 0
        for row in due:
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    await payout_cases.retry(conn, row["tenant_id"], row["id"], now=self._clock())
                retried += 1
            except ApiError as exc:
                async with self._pool.acquire() as conn:
                    await conn.execute(
                        "UPDATE payouts SET auto_retry = false, message = $2 WHERE id = $1",
                        row["id"],
                        f"not retried automatically: {exc}",
                    )
        if retried:
            self.wake()
        return retried

    async def escalate(self) -> int:
        """Payouts whose outcome has been unknown, or pending at the provider, for longer than
        the configured age: into the intervention queue, once. They keep their status."""
        cutoff = self._clock() - timedelta(hours=self._settings.unknown_max_age_h)
        async with self._pool.acquire() as conn:
            result: str = await conn.execute(
                "INSERT INTO payout_interventions (tenant_id, payout_id, reason)"
                " SELECT p.tenant_id, p.id, lower(p.status) || ' since ' || h.since::text"
                " FROM payouts p CROSS JOIN LATERAL (SELECT max(at) AS since FROM payout_history"
                " WHERE payout_id = p.id) h"
                " WHERE p.status IN ('UNKNOWN', 'PENDING') AND h.since < $1"
                " ON CONFLICT (payout_id) DO NOTHING",
                cutoff,
            )
        return int(result.split()[-1])

    async def step(self, payout_id: str, reference: str) -> asyncpg.Record | None:
        """Ask the provider about the payout's order (creating it if the provider does not
        know it) and apply the answer."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM payouts WHERE id = $1", payout_id)
        if row is None or row["status"] not in ("PENDING", "UNKNOWN"):
            return None
        order: ProviderOrder | None
        try:
            order = await self._provider.get_order(reference)
            if order is None:
                order = await self._provider.create_order(
                    order_id=reference,
                    amount=row["amount"],
                    currency=row["currency"],
                    iban=row["iban"] or "",
                    beneficiary=row["beneficiary"] or row["supplier_id"] or "marketplace",
                )
        except ProviderUnavailableError as exc:
            log.warning("payout outcome unknown", payout_id=payout_id, error=str(exc))
            order = None
        except ProviderRefusedError as exc:
            order = ProviderOrder(reference, "FAILURE", 0, detail=str(exc)[:500])
        now = self._clock()
        if order is None:
            polls = row["polls"] if row["status"] == "UNKNOWN" else 0
            delay = payout_cases.unknown_backoff(polls, self._settings.unknown_poll_delays_s)
        else:
            delay = timedelta(seconds=self._settings.pending_poll_s)
        async with self._pool.acquire() as conn, conn.transaction():
            return await payout_cases.apply_order(
                conn, payout_id, reference, order, now=now, next_poll_at=now + delay
            )

    async def on_callback(self, order_id: str) -> bool:
        """The provider says order `order_id` changed: ask it (its word is not taken from the
        callback's body) and apply, exactly as a poll does."""
        async with self._pool.acquire() as conn:
            payout_id = await conn.fetchval(
                "SELECT id FROM payouts WHERE provider_reference = $1", order_id
            )
        if payout_id is None:
            return False
        await self.step(payout_id, order_id)
        return True


class PayoutScheduler:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        settings: Settings,
        clock: Clock,
        executor: PayoutExecutor | None,
    ) -> None:
        self._pool = pool
        self._settings = settings
        self._clock = clock
        self._executor = executor

    async def run(self) -> None:
        while True:
            try:
                await self.run_due()
            except Exception as exc:
                log.warning("scheduler pass failed", error=repr(exc))
            await asyncio.sleep(self._settings.scheduler_poll_interval_s)

    async def run_due(self) -> int:
        """Claim and run every tenant's due slot; the number of runs this replica made."""
        now = self._clock()
        s = self._settings
        async with self._pool.acquire() as conn:
            tenants = await conn.fetch(
                "SELECT tenant_id, data FROM replica_tenants WHERE data->>'status' = 'active'"
            )
        runs = 0
        for t in tenants:
            schedule = tenant_settings(t["data"]).payout_schedule
            slots = [
                (
                    "SUPPLIER",
                    latest_slot(
                        schedule.frequency,
                        hour_utc=schedule.hour_utc,
                        day_of_week=schedule.day_of_week,
                        day_of_month=schedule.day_of_month,
                        now=now,
                    ),
                ),
                (
                    "MARKETPLACE",
                    latest_slot(
                        s.marketplace_payout_frequency,
                        hour_utc=s.marketplace_payout_hour_utc,
                        day_of_week=s.marketplace_payout_day_of_week,
                        day_of_month=1,
                        now=now,
                    ),
                ),
            ]
            for kind, slot in slots:
                if slot is not None and await self._run(t["tenant_id"], kind, slot, now):
                    runs += 1
        if runs and self._executor is not None:
            self._executor.wake()
        return runs

    async def _run(self, tenant_id: str, kind: str, slot: datetime, now: datetime) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            claimed = await conn.fetchval(
                "INSERT INTO schedule_runs (tenant_id, kind, slot) VALUES ($1, $2, $3)"
                " ON CONFLICT DO NOTHING RETURNING true",
                tenant_id,
                kind,
                slot,
            )
            if not claimed:
                return False
            if kind == "SUPPLIER":
                made = await payout_cases.compute_supplier_payouts(conn, tenant_id, period_end=slot)
            else:
                made = await payout_cases.compute_marketplace_payout(
                    conn, tenant_id, period_end=slot
                )
            for row in made:
                if row["status"] == "COMPUTED":
                    await payout_cases.execute(conn, tenant_id, row["id"], now=now)
            await conn.execute(
                "UPDATE schedule_runs SET payouts = $4 WHERE tenant_id = $1 AND kind = $2"
                " AND slot = $3",
                tenant_id,
                kind,
                slot,
                len(made),
            )
        log.info(
            "scheduled payouts computed", tenant_id=tenant_id, kind=kind, slot=slot.isoformat()
        )
        return True
