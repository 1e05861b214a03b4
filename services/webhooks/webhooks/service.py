"""Webhook use cases besides ingestion (`webhooks.ingestion`): manage a merchant account's
HMAC keys, replay stored notifications."""

from __future__ import annotations

import hmac

import asyncpg

from common.broker.outbox import enqueue_many, new_envelope
from common.db.types import Conn
from common.events import EventType
from common.logging import get_logger
from webhooks import domain, errors, repo
from webhooks.crypto import KeyBox
from webhooks.ingestion import key_aad, open_keys
from webhooks.schemas import MAX_RANGE_REPLAY, HmacKeyPut, ReplayRequest

log = get_logger("webhooks.service")

MAX_ACTIVE_KEYS = 2


async def put_key(
    conn: Conn, keybox: KeyBox, tenant_id: str, body: HmacKeyPut
) -> tuple[asyncpg.Record, bool]:
    """Add the key, or find it active already (putting the same key again changes nothing);
    the row, and whether it was added."""
    key = body.key.get_secret_value().lower()
    tenant = await repo.lock_tenant(conn, tenant_id)
    if tenant is None or tenant["merchant_account"] != body.merchant_account:
        raise errors.merchant_account_not_yours()
    active = await repo.active_keys(conn, tenant_id, body.merchant_account)
    for row, opened in open_keys(keybox, tenant_id, body.merchant_account, active):
        if hmac.compare_digest(opened, key):
            return row, False
    if len(active) >= MAX_ACTIVE_KEYS:
        raise errors.hmac_key_limit()
    key_id = repo.new_id("hk")
    sealed = keybox.seal(key, key_aad(tenant_id, body.merchant_account, key_id))
    row = await repo.insert_key(conn, key_id, tenant_id, body.merchant_account, sealed)
    log.info("hmac key added", key_id=key_id, merchant_account=body.merchant_account)
    return row, True


async def revoke_key(conn: Conn, tenant_id: str, key_id: str) -> asyncpg.Record:
    row = await repo.revoke_key(conn, tenant_id, key_id)
    if row is None:
        raise errors.hmac_key_not_found()
    log.info("hmac key revoked", key_id=key_id)
    return row


async def replay(conn: Conn, tenant_id: str, request: ReplayRequest) -> list[str]:
    """Publish stored notifications again (new envelopes, same payload) through the outbox,
    in the order they were received; consumers apply each one once."""
    if request.ids is not None:
        wanted = list(dict.fromkeys(request.ids))
        rows = await repo.notifications_by_ids(conn, tenant_id, wanted)
        if len(rows) != len(wanted):
            raise errors.notification_not_found()
    else:
        received_from, received_to = request.reception_range()
        rows = await repo.notifications_received(
            conn,
            tenant_id,
            received_from,
            received_to,
            request.event_code,
            MAX_RANGE_REPLAY + 1,
        )
        if len(rows) > MAX_RANGE_REPLAY:
            raise errors.replay_range_too_large(MAX_RANGE_REPLAY)
    events = []
    for row in rows:
        item = domain.parse_item(repo.raw_item(row))
        envelope = new_envelope(
            EventType.PSP_NOTIFICATION_RECEIVED,
            domain.event_data(item, notification_id=row["id"], psp=row["psp"]),
            tenant_id=tenant_id,
        )
        events.append((envelope, item.merchant_reference))
    await enqueue_many(conn, events)
    return [row["id"] for row in rows]
