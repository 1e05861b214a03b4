"""The sandbox's incoming bank transfers (control API): a test makes money arrive on a
merchant account to a creditor reference, and the sandbox sends the signed
`BANK_TRANSFER_RECEIVED` notification, like its other webhooks (retried, fault-injected).

Notification: `eventCode` `BANK_TRANSFER_RECEIVED`, `success` "true", `merchantReference` =
the reference the buyer quoted (ISO 11649 `RF...`), `pspReference` = the transfer's own
reference (the same one again: the same transfer delivered twice), `amount` = what arrived,
`paymentMethod` `bankTransfer`.
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from common.http.errors import NotFound
from common.http.routing import Api, Call
from psp_sandbox.app import STORE, WEBHOOKS
from psp_sandbox.webhooks import notification_item

BANK_TRANSFER_RECEIVED = "BANK_TRANSFER_RECEIVED"


class AmountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # any integer: tests send what a bank never should (zero, negative)
    value: int = Field(ge=-(10**15), le=10**15)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class IncomingTransferCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: str = Field(min_length=1, max_length=80)
    amount: AmountIn
    psp_reference: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")


class IncomingTransferSent(BaseModel):
    pspReference: str
    eventCode: str


def register(api: Api) -> None:
    @api.post(
        "/sandbox/merchant-accounts/{code}/incoming-transfers",
        summary="A bank transfer arrives to a reference: the sandbox sends a signed"
        " BANK_TRANSFER_RECEIVED notification",
        roles=None,
        body=IncomingTransferCreate,
        response=IncomingTransferSent,
        status=201,
        tags=("sandbox",),
    )
    async def incoming_transfer(
        request: web.Request, call: Call[IncomingTransferCreate]
    ) -> web.Response:
        store = request.app[STORE]
        account = store.accounts.get(request.match_info["code"])
        if account is None:
            raise NotFound("no such merchant account", code="resource_not_found", param="code")
        psp_reference = call.body.psp_reference or store.new_psp_reference()
        request.app[WEBHOOKS].notify(
            account,
            notification_item(
                account=account,
                event_code=BANK_TRANSFER_RECEIVED,
                success=True,
                psp_reference=psp_reference,
                merchant_reference=call.body.reference,
                amount=call.body.amount.model_dump(),
                payment_method="bankTransfer",
            ),
        )
        sent = IncomingTransferSent(pspReference=psp_reference, eventCode=BANK_TRANSFER_RECEIVED)
        return web.json_response(sent.model_dump(), status=201)
