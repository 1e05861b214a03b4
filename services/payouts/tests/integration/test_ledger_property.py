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
    model = Model()
    captures = []  # (event, remaining platform, marketplace, supplier)
    charged_back: set[int] = set()
    for n, op in enumerate(ops):
        async with ledger_pool.acquire() as conn, conn.transaction():
            if op[0] == "capture":
                _, s, amount, prate, mrate = op
                event = capture_succeeded(
                    supplier_id=SUPPLIERS[int(s)],  # type: ignore[call-overload]
                    amount=int(amount),  # type: ignore[call-overload]
                    platform_rate=str(prate),
                    marketplace_rate=str(mrate),
                )
                await service.on_capture_succeeded(conn, tenant_id, event)
                lines = {x.party: x.amount for x in event.splits}
                captures.append([event, lines["PLATFORM"], lines["MARKETPLACE"], lines["SUPPLIER"]])
                model.add("PLATFORM", lines["PLATFORM"])
                model.add("MARKETPLACE", lines["MARKETPLACE"])
                model.add(event.supplier_id, lines["SUPPLIER"])
            elif op[0] == "refund" and captures:
                _, i, percent, succeeds = op
                c = captures[int(i) % len(captures)]  # type: ignore[call-overload]
                event, p, m, s = c
                if int(i) % len(captures) in charged_back:  # type: ignore[call-overload]
                    continue
                sp = s * int(percent) // 100  # type: ignore[call-overload]
                pp, mp = p * int(percent) // 100, m * int(percent) // 100  # type: ignore[call-overload]
                if sp + pp + mp == 0:
                    continue
                lines = return_lines(event, pp, mp, sp)
                ref = f"ref_{n}"
                await service.on_refund_requested(
                    conn,
                    tenant_id,
                    # as capture sets it: a funds check exactly under REFUSE_REFUND
                    refund_requested(event, lines, refund_id=ref, funds_check=not covers),
                )
                decision = await conn.fetchval(
                    "SELECT status FROM refunds WHERE tenant_id = $1 AND refund_id = $2",
                    tenant_id,
                    ref,
                )
                if decision == "REFUSED":
                    continue
                if succeeds:
                    await service.on_refund_succeeded(
                        conn, tenant_id, refund_succeeded(event, lines, refund_id=ref)
                    )
                    c[1], c[2], c[3] = p - pp, m - mp, s - sp
                    model.add("PLATFORM", -pp)
                    model.add("MARKETPLACE", -mp)
                    model.add(event.supplier_id, -sp)
                else:
                    await service.on_refund_failed(
                        conn, tenant_id, refund_failed(event, lines, refund_id=ref)
                    )
            elif op[0] == "chargeback" and captures:
                _, i, reverse = op
                index = int(i) % len(captures)  # type: ignore[call-overload]
                if index in charged_back:
                    continue
                event, p, m, s = captures[index]
                if p + m + s == 0:
                    continue
                charged_back.add(index)
                lines = return_lines(event, p, m, s)
                cb = chargeback(event, lines, chargeback_id=f"cb_{n}")
                await service.on_chargeback(conn, tenant_id, cb, reversed_=False)
                model.add("PLATFORM", -p)
                model.add("MARKETPLACE", -m)
                model.add(event.supplier_id, -s)
                if reverse:
                    await service.on_chargeback(conn, tenant_id, cb, reversed_=True)
                    model.add("PLATFORM", p)
                    model.add("MARKETPLACE", m)
                    model.add(event.supplier_id, s)
            elif op[0] == "payout":
                _, s, settles = op
                supplier = SUPPLIERS[int(s)]  # type: ignore[call-overload]
                acct = await ledger.account(conn, tenant_id, "EUR", "SUPPLIER", supplier)
                if acct.available <= 0:
                    continue
                ref = f"po_{n}"
                assert await ledger.place_hold(conn, acct, acct.available, "PAYOUT", ref)
                if settles:
                    await ledger.post(
                        conn,
                        [
                            payout_entry(
                                tenant_id,
                                payout_id=ref,
                                currency="EUR",
                                account="SUPPLIER",
                                supplier_id=supplier,
                                amount=acct.available,
                            )
                        ],
                    )
                    assert await ledger.resolve_hold(conn, tenant_id, "PAYOUT", ref, "SETTLED")
                    model.add(supplier, -acct.available)
                else:
                    assert await ledger.resolve_hold(conn, tenant_id, "PAYOUT", ref, "RELEASED")
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
