"""The ledger's SQL: posting entries (one round trip for a batch, `ledger_post` in the
migration), holds, balances now and at a past instant, and the ledger check."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from common.db.types import Conn
from payouts.domain import AccountKind, Entry

PostOutcome = Literal["posted", "replayed", "conflict"]


@dataclass(frozen=True)
class Posted:
    key: str
    transaction_id: int
    outcome: PostOutcome


async def post(conn: Conn, entries: Sequence[Entry]) -> list[Posted]:
    """Post `entries` in the caller's transaction; the database checks each balances at
    commit. Same key and same content: `replayed`; other content: `conflict` (recorded)."""
    if not entries:
        return []
    rows = await conn.fetch("SELECT * FROM ledger_post($1::jsonb)", [e.as_json() for e in entries])
    return [Posted(r["idempotency_key"], r["transaction_id"], r["outcome"]) for r in rows]


@dataclass(frozen=True)
class Account:
    id: int
    tenant_id: str
    currency: str
    type: AccountKind
    supplier_id: str | None
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held


def _account(row: asyncpg.Record) -> Account:
    return Account(
        id=row["id"],
        tenant_id=row["tenant_id"],
        currency=row["currency"],
        type=row["type"],
        supplier_id=row["supplier_id"] or None,
        balance=row["balance"],
        held=row["held"],
    )


async def account(
    conn: Conn,
    tenant_id: str,
    currency: str,
    kind: AccountKind,
    supplier_id: str | None = None,
    *,
    for_update: bool = False,
) -> Account:
    """The account, created empty if it does not exist yet; `for_update` locks it."""
    await flush(conn)
    await conn.execute(
        "INSERT INTO accounts (tenant_id, currency, type, supplier_id) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT DO NOTHING",
        tenant_id,
        currency,
        kind,
        supplier_id or "",
    )
    row = await conn.fetchrow(
        "SELECT * FROM accounts WHERE tenant_id = $1 AND currency = $2 AND type = $3"
        " AND supplier_id = $4" + (" FOR NO KEY UPDATE" if for_update else ""),
        tenant_id,
        currency,
        kind,
        supplier_id or "",
    )
    assert row is not None
    return _account(row)


async def place_hold(conn: Conn, acct: Account, amount: int, ref_type: str, ref_id: str) -> bool:
    """Set `amount` aside on `acct` for `ref`; False if that ref already has a hold."""
    placed = await conn.fetchval(
        "WITH h AS (INSERT INTO holds (tenant_id, account_id, amount, ref_type, ref_id)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING amount)"
        " UPDATE accounts SET held = held + h.amount, updated_at = now() FROM h"
        " WHERE accounts.id = $2 RETURNING true",
        acct.tenant_id,
        acct.id,
        amount,
        ref_type,
        ref_id,
    )
    return bool(placed)


async def place_holds(
    conn: Conn,
    tenant_id: str,
    holds: Sequence[tuple[int, int, str]],
    ref_type: str,
) -> None:
    """`place_hold` for many `(account id, amount, ref id)` in two statements (the accounts
    already locked by the caller)."""
    await conn.execute(
        "WITH h AS (INSERT INTO holds (tenant_id, account_id, amount, ref_type, ref_id)"
        " SELECT $1, a, m, $2, r FROM unnest($3::bigint[], $4::bigint[], $5::text[])"
        " AS x(a, m, r) ON CONFLICT DO NOTHING RETURNING account_id, amount)"
        " UPDATE accounts SET held = held + t.total, updated_at = now()"
        " FROM (SELECT account_id, sum(amount) AS total FROM h GROUP BY account_id) t"
        " WHERE accounts.id = t.account_id",
        tenant_id,
        ref_type,
        [h[0] for h in holds],
        [h[1] for h in holds],
        [h[2] for h in holds],
    )


async def resolve_hold(
    conn: Conn,
    tenant_id: str,
    ref_type: str,
    ref_id: str,
    to: Literal["SETTLED", "RELEASED"],
) -> int | None:
    """Resolve the open hold of `ref`, exactly once: its amount, or None when there is no
    open hold (never placed, or already settled or released)."""
    amount: int | None = await conn.fetchval(
        "WITH h AS (UPDATE holds SET status = $4, resolved_at = now()"
        " WHERE tenant_id = $1 AND ref_type = $2 AND ref_id = $3 AND status = 'OPEN'"
        " RETURNING account_id, amount)"
        " UPDATE accounts a SET held = a.held - h.amount, updated_at = now() FROM h"
        " WHERE a.id = h.account_id RETURNING h.amount",
        tenant_id,
        ref_type,
        ref_id,
        to,
    )
    return amount


async def balances(
    conn: Conn,
    tenant_id: str,
    *,
    as_of: datetime | None = None,
    supplier_id: str | None = None,
) -> list[asyncpg.Record]:
    """Every account of the tenant (or one supplier's) with its balance: the current one, or
    at `as_of`, summed from the postings up to that instant."""
    args: list[object] = [tenant_id]
    where = "a.tenant_id = $1"
    if supplier_id is not None:
        args.append(supplier_id)
        where += f" AND a.type = 'SUPPLIER' AND a.supplier_id = ${len(args)}"
    if as_of is None:
        return list(
            await conn.fetch(
                f"SELECT a.*, a.balance - a.held AS available FROM accounts a WHERE {where}"
                " ORDER BY a.currency, a.type, a.supplier_id",
                *args,
            )
        )
    args.append(as_of)
    return list(
        await conn.fetch(
            "SELECT a.id, a.tenant_id, a.currency, a.type, a.supplier_id,"
            " coalesce((SELECT sum(p.amount) FROM postings p WHERE p.account_id = a.id"
            f" AND p.posted_at <= ${len(args)}), 0)::bigint AS balance,"
            " NULL::bigint AS held, NULL::bigint AS available"
            f" FROM accounts a WHERE {where} AND a.created_at <= ${len(args)}"
            " ORDER BY a.currency, a.type, a.supplier_id",
            *args,
        )
    )


@dataclass(frozen=True)
class CheckResult:
    unbalanced_transactions: int
    nonzero_tenant_currencies: int
    balance_mismatches: int
    held_mismatches: int
    conflicts: int

    @property
    def ok(self) -> bool:
        return not (
            self.unbalanced_transactions
            or self.nonzero_tenant_currencies
            or self.balance_mismatches
            or self.held_mismatches
        )


async def check(conn: Conn, tenant_id: str | None = None) -> CheckResult:
    """The ledger check: every transaction balances per currency; each tenant-currency sums to
    zero; each balance equals the sum of its postings, each `held` the sum of its open holds.
    Conflicts (same key, other content) are counted, not failures: nothing was posted."""
    t = "($1::text IS NULL OR {col} = $1)"
    row = await conn.fetchrow(
        f"""
        SELECT
          (SELECT count(*) FROM (SELECT 1 FROM postings p
              JOIN ledger_transactions l ON l.id = p.transaction_id
             WHERE {t.format(col="l.tenant_id")}
             GROUP BY p.transaction_id, p.currency HAVING sum(p.amount) <> 0) x)
            AS unbalanced_transactions,
          (SELECT count(*) FROM (SELECT 1 FROM accounts a
             WHERE {t.format(col="a.tenant_id")}
             GROUP BY a.tenant_id, a.currency HAVING sum(a.balance) <> 0) x)
            AS nonzero_tenant_currencies,
          (SELECT count(*) FROM accounts a
             LEFT JOIN (SELECT account_id, sum(amount) AS total FROM postings
                         GROUP BY account_id) s ON s.account_id = a.id
            WHERE {t.format(col="a.tenant_id")} AND a.balance <> coalesce(s.total, 0))
            AS balance_mismatches,
          (SELECT count(*) FROM accounts a
             LEFT JOIN (SELECT account_id, sum(amount) AS total FROM holds
                         WHERE status = 'OPEN' GROUP BY account_id) h ON h.account_id = a.id
            WHERE {t.format(col="a.tenant_id")} AND a.held <> coalesce(h.total, 0))
            AS held_mismatches,
          (SELECT count(*) FROM ledger_conflicts c WHERE {t.format(col="c.tenant_id")})
            AS conflicts
        """,
        tenant_id,
    )
    assert row is not None
    return CheckResult(**dict(row))


async def flush(conn: Conn) -> None:
    """Apply the balance changes this transaction staged (they are applied at commit anyway):
    before reading balances in the transaction that posted."""
    await conn.execute("SELECT ledger_flush()")


async def lock_accounts(
    conn: Conn,
    tenant_id: str,
    currency: str,
    wanted: Sequence[tuple[AccountKind, str | None]],
) -> dict[tuple[AccountKind, str | None], Account]:
    """Create (if need be) and lock `wanted` accounts in id order, the ledger's fixed order,
    so that a decision read from their balances holds until the caller commits."""
    await flush(conn)
    kinds = [k for k, _ in wanted]
    suppliers = [s or "" for _, s in wanted]
    await conn.execute(
        "INSERT INTO accounts (tenant_id, currency, type, supplier_id)"
        " SELECT $1, $2, k, s FROM unnest($3::text[], $4::text[]) AS w(k, s)"
        " ON CONFLICT DO NOTHING",
        tenant_id,
        currency,
        kinds,
        suppliers,
    )
    rows = await conn.fetch(
        "SELECT a.* FROM accounts a JOIN unnest($3::text[], $4::text[]) AS w(k, s)"
        " ON a.type = w.k AND a.supplier_id = w.s"
        " WHERE a.tenant_id = $1 AND a.currency = $2 ORDER BY a.id FOR NO KEY UPDATE OF a",
        tenant_id,
        currency,
        kinds,
        suppliers,
    )
    found = {(r["type"], r["supplier_id"] or None): _account(r) for r in rows}
    return found
