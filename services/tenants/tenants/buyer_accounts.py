"""Buyer accounts' bank-wire payment option (DESIGN §10): `BANK_WIRE_ON_DUE_DATE` or
`BANK_WIRE_ON_ACCEPTANCE` (the default for an account never set), exclusive, changed by the
tenant's operators only (a supplier or storefront key gets 403). Each change publishes the
account's full state as `buyer_account.upserted` for checkout's replica."""

from __future__ import annotations

import re
from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from common.broker import publish_event
from common.db.types import Conn
from common.events import BankWireOption, BuyerAccountUpserted, EventType
from common.http.envelope import ok
from common.http.errors import Unprocessable
from common.http.routing import OPERATOR, Api, Call
from common.runtime import DB_POOL

DEFAULT_OPTION: BankWireOption = "BANK_WIRE_ON_ACCEPTANCE"


class BuyerAccountPut(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    payment_option: BankWireOption


class BuyerAccount(BaseModel):
    buyer_account: str
    payment_option: BankWireOption
    revision: int
    updated_at: datetime | None


_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


async def put_option(
    conn: Conn, tenant_id: str, buyer_account: str, option: BankWireOption
) -> BuyerAccount:
    """Set the option; setting the one already set changes (and publishes) nothing."""
    row = await conn.fetchrow(
        "INSERT INTO buyer_accounts (tenant_id, buyer_account, payment_option)"
        " VALUES ($1, $2, $3)"
        " ON CONFLICT (tenant_id, buyer_account) DO UPDATE"
        " SET payment_option = EXCLUDED.payment_option, revision = buyer_accounts.revision + 1,"
        " updated_at = now()"
        " WHERE buyer_accounts.payment_option <> EXCLUDED.payment_option"
        " RETURNING buyer_account, payment_option, revision, updated_at",
        tenant_id,
        buyer_account,
        option,
    )
    if row is None:  # unchanged
        return await get_option(conn, tenant_id, buyer_account)
    await publish_event(
        conn,
        EventType.BUYER_ACCOUNT_UPSERTED,
        BuyerAccountUpserted(
            tenant_id=tenant_id,
            buyer_account=buyer_account,
            revision=row["revision"],
            payment_option=row["payment_option"],
        ),
        tenant_id=tenant_id,
        aggregate_id=f"{tenant_id}:{buyer_account}",
    )
    return BuyerAccount(**dict(row))


async def republish(conn: Conn) -> int:
    """Every set buyer account's state again, same revisions (see `service.republish`)."""
    rows = await conn.fetch(
        "SELECT tenant_id, buyer_account, payment_option, revision FROM buyer_accounts"
        " ORDER BY created_at, tenant_id, buyer_account"
    )
    for row in rows:
        await publish_event(
            conn,
            EventType.BUYER_ACCOUNT_UPSERTED,
            BuyerAccountUpserted(**dict(row)),
            tenant_id=row["tenant_id"],
            aggregate_id=f"{row['tenant_id']}:{row['buyer_account']}",
        )
    return len(rows)


async def get_option(conn: Conn, tenant_id: str, buyer_account: str) -> BuyerAccount:
    row = await conn.fetchrow(
        "SELECT buyer_account, payment_option, revision, updated_at FROM buyer_accounts"
        " WHERE tenant_id = $1 AND buyer_account = $2",
        tenant_id,
        buyer_account,
    )
    if row is None:
        return BuyerAccount(
            buyer_account=buyer_account, payment_option=DEFAULT_OPTION, revision=0, updated_at=None
        )
    return BuyerAccount(**dict(row))


def _account_id(request: web.Request) -> str:
    account = request.match_info["buyer_account"]
    if not _ID.fullmatch(account):
        raise Unprocessable(
            "a buyer account id is 1 to 64 letters, digits or _.:-",
            code="parameter_invalid",
            param="buyer_account",
        )
    return account


def register(api: Api) -> None:
    @api.put(
        "/v1/admin/buyer-accounts/{buyer_account}",
        summary="Set a buyer account's bank-wire payment option (operators only)",
        roles=OPERATOR,
        body=BuyerAccountPut,
        response=BuyerAccount,
        tags=["buyer accounts"],
    )
    async def put_buyer_account(request: web.Request, call: Call[BuyerAccountPut]) -> web.Response:
        account = _account_id(request)
        async with request.app[DB_POOL].acquire() as conn, conn.transaction():
            out = await put_option(conn, call.tenant_id, account, call.body.payment_option)
        return ok("buyer_account", out, id_=account)

    @api.get(
        "/v1/admin/buyer-accounts/{buyer_account}",
        summary="A buyer account's bank-wire payment option (the default when never set)",
        roles=OPERATOR,
        response=BuyerAccount,
        tags=["buyer accounts"],
    )
    async def get_buyer_account(request: web.Request, call: Call[None]) -> web.Response:
        account = _account_id(request)
        async with request.app[DB_POOL].acquire() as conn:
            out = await get_option(conn, call.tenant_id, account)
        return ok("buyer_account", out, id_=account)
