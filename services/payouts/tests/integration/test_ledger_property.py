"""Ledger property: any sequence of captures, refunds (reserved then succeeded or failed, or
refused), chargebacks (and reversals) and payouts, under either funding policy, leaves every
transaction balanced, each tenant-currency summing to zero, every balance equal to its
postings and to an independent model of what each party is owed."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.db.types import Conn
from common.events import CaptureSucceeded
from common.testing.tenancy import tenant_upserted
from payouts import ledger, service
from payouts.domain import payout_entry
from payouts.testing import (
    capture_succeeded,
    chargeback,
    refund_failed,
    refund_requested,
    refund_succeeded,
    return_lines,
)

SUPPLIERS = ["sup_a", "sup_b", "sup_c"]

capture_op = st.tuples(
    st.just("capture"),
    st.integers(0, 2),
    st.integers(1, 200_000),
    st.sampled_from(["0", "2.5", "7.25"]),
    st.sampled_from(["0", "10", "12.5"]),
)
refund_op = st.tuples(st.just("refund"), st.integers(0, 50), st.integers(1, 100), st.booleans())
chargeback_op = st.tuples(st.just("chargeback"), st.integers(0, 50), st.booleans())
payout_op = st.tuples(st.just("payout"), st.integers(0, 2), st.booleans())
operations = st.lists(st.one_of(capture_op, refund_op, chargeback_op, payout_op), max_size=25)


@dataclass
class Model:
    owed: dict[str, int] = field(default_factory=dict)  # party or supplier -> balance

    def add(self, who: str, amount: int) -> None:
        self.owed[who] = self.owed.get(who, 0) + amount


@dataclass
class Run:
    """One sequence of operations against the real ledger, beside the model."""

    tenant_id: str
    covers: bool
    model: Model = field(default_factory=Model)
    captures: list[list[object]] = field(default_factory=list)  # event, platform, mkt, supplier
    charged_back: set[int] = field(default_factory=set)

    async def capture(self, conn: Conn, op: tuple[object, ...]) -> None:
        _, s, amount, prate, mrate = op
        event = capture_succeeded(
            supplier_id=SUPPLIERS[int(s)],  # type: ignore[call-overload]
            amount=int(amount),  # type: ignore[call-overload]
            platform_rate=str(prate),
            marketplace_rate=str(mrate),
        )
        await service.on_capture_succeeded(conn, self.tenant_id, event)
        lines = {x.party: x.amount for x in event.splits}
        self.captures.append([event, lines["PLATFORM"], lines["MARKETPLACE"], lines["SUPPLIER"]])
        self.owe(event.supplier_id, lines["PLATFORM"], lines["MARKETPLACE"], lines["SUPPLIER"])

    def owe(self, supplier_id: str, platform: int, marketplace: int, supplier: int) -> None:
        self.model.add("PLATFORM", platform)
        self.model.add("MARKETPLACE", marketplace)
        self.model.add(supplier_id, supplier)

    async def refund(self, conn: Conn, n: int, op: tuple[object, ...]) -> None:
        _, i, percent, succeeds = op
        index = int(i) % len(self.captures)  # type: ignore[call-overload]
        if index in self.charged_back:
            return
        c = self.captures[index]
        event, p, m, s = c
        assert isinstance(event, CaptureSucceeded)
        assert isinstance(p, int)
        assert isinstance(m, int)
        assert isinstance(s, int)
        share = int(percent)  # type: ignore[call-overload]
        sp, pp, mp = s * share // 100, p * share // 100, m * share // 100
        if sp + pp + mp == 0:
            return
        lines = return_lines(event, pp, mp, sp)
        ref = f"ref_{n}"
        # as capture sets it: a funds check exactly under REFUSE_REFUND
        requested = refund_requested(event, lines, refund_id=ref, funds_check=not self.covers)
        await service.on_refund_requested(conn, self.tenant_id, requested)
        decision = await conn.fetchval(
            "SELECT status FROM refunds WHERE tenant_id = $1 AND refund_id = $2",
            self.tenant_id,
            ref,
        )
        if decision == "REFUSED":
            return
        if not succeeds:
            failed = refund_failed(event, lines, refund_id=ref)
            await service.on_refund_failed(conn, self.tenant_id, failed)
            return
        await service.on_refund_succeeded(
            conn, self.tenant_id, refund_succeeded(event, lines, refund_id=ref)
        )
        c[1], c[2], c[3] = p - pp, m - mp, s - sp
        self.owe(event.supplier_id, -pp, -mp, -sp)

    async def chargeback(self, conn: Conn, n: int, op: tuple[object, ...]) -> None:
        _, i, reverse = op
        index = int(i) % len(self.captures)  # type: ignore[call-overload]
        if index in self.charged_back:
            return
        event, p, m, s = self.captures[index]
        assert isinstance(event, CaptureSucceeded)
        assert isinstance(p, int)
        assert isinstance(m, int)
        assert isinstance(s, int)
        if p + m + s == 0:
            return
        self.charged_back.add(index)
        cb = chargeback(event, return_lines(event, p, m, s), chargeback_id=f"cb_{n}")
        await service.on_chargeback(conn, self.tenant_id, cb, reversed_=False)
        self.owe(event.supplier_id, -p, -m, -s)
        if reverse:
            await service.on_chargeback(conn, self.tenant_id, cb, reversed_=True)
            self.owe(event.supplier_id, p, m, s)

    async def payout(self, conn: Conn, n: int, op: tuple[object, ...]) -> None:
        _, s, settles = op
        supplier = SUPPLIERS[int(s)]  # type: ignore[call-overload]
        acct = await ledger.account(conn, self.tenant_id, "EUR", "SUPPLIER", supplier)
        if acct.available <= 0:
            return
        ref = f"po_{n}"
        assert await ledger.place_hold(conn, acct, acct.available, "PAYOUT", ref)
        if not settles:
            assert await ledger.resolve_hold(conn, self.tenant_id, "PAYOUT", ref, "RELEASED")
            return
        entry = payout_entry(
            self.tenant_id,
            payout_id=ref,
            currency="EUR",
            account="SUPPLIER",
            supplier_id=supplier,
            amount=acct.available,
        )
        await ledger.post(conn, [entry])
        assert await ledger.resolve_hold(conn, self.tenant_id, "PAYOUT", ref, "SETTLED")
        self.model.add(supplier, -acct.available)

    async def apply(self, conn: Conn, n: int, op: tuple[object, ...]) -> None:
        if op[0] == "capture":
            await self.capture(conn, op)
        elif op[0] == "refund" and self.captures:
            await self.refund(conn, n, op)
        elif op[0] == "chargeback" and self.captures:
            await self.chargeback(conn, n, op)
        elif op[0] == "payout":
            await self.payout(conn, n, op)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations, covers=st.booleans())
async def test_any_sequence_keeps_the_books_balanced(
    ledger_pool: asyncpg.Pool, ops: list[tuple[object, ...]], covers: bool
) -> None:
    tenant_id = f"ten_{secrets.token_hex(6)}"
    policy = "MARKETPLACE_COVERS" if covers else "REFUSE_REFUND"
    async with ledger_pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO replica_tenants (tenant_id, revision, merchant_account, data)"
            " VALUES ($1, 1, 'M', $2)",
            tenant_id,
            tenant_upserted(tenant_id, "M")
            .model_copy(update={"funding_policy": policy})
            .model_dump(mode="json"),
        )
    run = Run(tenant_id, covers)
    model = run.model
    for n, op in enumerate(ops):
        async with ledger_pool.acquire() as conn, conn.transaction():
            await run.apply(conn, n, op)
    async with ledger_pool.acquire() as conn:
        result = await ledger.check(conn, tenant_id)
        rows = await ledger.balances(conn, tenant_id)
    assert result.ok, result
    assert result.conflicts == 0
    got = {(r["supplier_id"] or r["type"]): r["balance"] for r in rows}
    # funding transfers move money between the marketplace and suppliers only
    assert got.get("PLATFORM", 0) == model.owed.get("PLATFORM", 0)
    parties = ["MARKETPLACE", *SUPPLIERS]
    assert sum(got.get(k, 0) for k in parties) == sum(model.owed.get(k, 0) for k in parties)
    if not covers:  # no advances: each account exactly as the model says
        for k in parties:
            assert got.get(k, 0) == model.owed.get(k, 0), k
