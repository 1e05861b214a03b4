"""The webhooks service's HTTP routes: the PSP's public notification endpoint (authenticated
by each item's HMAC signature, not by an API key) and the operator's admin API."""

from __future__ import annotations

import json

from aiohttp import web

from common.http.envelope import ok, page
from common.http.errors import BadRequest
from common.http.routing import OPERATOR, Api, Call
from common.money import Money
from common.runtime import DB_POOL
from webhooks import domain, errors, repo, service
from webhooks.app import INGESTION, KEYBOX, MERCHANT_ACCOUNTS, SETTINGS
from webhooks.schemas import HmacKey, HmacKeyPut, Notification, ReplayRequest, ReplayResult

api = Api("Marketpay webhooks")

ACCEPTED = "[accepted]"


@api.post(
    "/v1/webhooks/psp/adyen",
    summary="Adyen standard notifications: answered [accepted] once the batch is stored",
    tags=["psp"],
    # invalid_json / invalid_notification, hmac_signature_invalid, merchant_account_unknown,
    # the body over the limit; the body is Adyen's, not described here
    errors=(400, 401, 404, 413),
    media_type="text/plain",
)
async def adyen_notifications(request: web.Request, _: Call[None]) -> web.Response:
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
    raw = await request.read()
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise BadRequest("the body is not valid JSON", code="invalid_json") from None
    try:
        items = domain.parse_batch(payload)
    except domain.MalformedNotification as exc:
        await request.app[INGESTION].record_malformed("adyen", payload, request.remote)
        raise BadRequest(exc.message, code="invalid_notification", param=exc.param) from None
    await request.app[INGESTION].ingest(psp="adyen", items=items, remote=request.remote)
    return web.Response(text=ACCEPTED)


def key_out(key: domain.HmacKeyState) -> HmacKey:
    return HmacKey(
        id=key.id,
        merchant_account=key.merchant_account,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


def notification_out(view: domain.NotificationView) -> Notification:
    amount = (
        Money(value=view.amount, currency=view.currency)
        if view.amount is not None and view.currency is not None
        else None
    )
    return Notification(
        id=view.id,
        accepted=view.accepted,
        psp=view.psp,
        merchant_account=view.merchant_account,
        event_code=view.event_code,
        success=view.success,
        psp_reference=view.psp_reference,
        original_reference=view.original_reference,
        merchant_reference=view.merchant_reference,
        amount=amount,
        refusal_reason=view.refusal_reason,
        received_at=view.created_at,
        item=dict(view.raw) if view.raw is not None else None,
    )


@api.put(
    "/v1/admin/webhooks/hmac-keys",
    summary="Add an HMAC key of the tenant's merchant account (write-only; two active at most;"
    " 200 when this key is active already)",
    roles=OPERATOR,
    body=HmacKeyPut,
    response=HmacKey,
    status=201,
    tags=["hmac-keys"],
)
async def put_hmac_key(request: web.Request, call: Call[HmacKeyPut]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        key, added = await service.put_key(conn, request.app[KEYBOX], call.tenant_id, call.body)
    request.app[MERCHANT_ACCOUNTS].forget(key.merchant_account)
    return ok("hmac_key", key_out(key), status=201 if added else 200)


@api.delete(
    "/v1/admin/webhooks/hmac-keys/{id}",
    summary="Revoke an HMAC key",
    roles=OPERATOR,
    response=HmacKey,
    tags=["hmac-keys"],
)
async def delete_hmac_key(request: web.Request, call: Call[None]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        key = await service.revoke_key(conn, call.tenant_id, request.match_info["id"])
    request.app[MERCHANT_ACCOUNTS].forget(key.merchant_account)
    return ok("hmac_key", key_out(key))


@api.get(
    "/v1/admin/webhooks/notifications",
    summary="Stored notifications (accepted=false: the refused deliveries), newest first",
    roles=OPERATOR,
    response=Notification,
    list_response=True,
    query=repo.NOTIFICATION_LIST,
    tags=["notifications"],
)
async def list_notifications(request: web.Request, call: Call[None]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn:
        rows, info = await repo.notification_page(conn, call.tenant_id, call.query)
    return page([notification_out(r) for r in rows], info)


@api.get(
    "/v1/admin/webhooks/notifications/{id}",
    summary="One stored (or refused) notification",
    roles=OPERATOR,
    response=Notification,
    tags=["notifications"],
)
async def get_notification(request: web.Request, call: Call[None]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn:
        view = await repo.notification(conn, call.tenant_id, request.match_info["id"])
    if view is None:
        raise errors.notification_not_found()
    return ok("notification", notification_out(view))


@api.post(
    "/v1/admin/webhooks/notifications/replay",
    summary="Publish stored notifications again (by id, or a range of reception times)",
    roles=OPERATOR,
    body=ReplayRequest,
    response=ReplayResult,
    tags=["notifications"],
)
async def replay_notifications(request: web.Request, call: Call[ReplayRequest]) -> web.Response:
    async with request.app[DB_POOL].acquire() as conn, conn.transaction():
        replayed = await service.replay(conn, call.tenant_id, call.body)
    return ok("replay", ReplayResult(replayed=replayed), id_="")
