"""Webhook use cases besides ingestion (`webhooks.ingestion`): manage a merchant account's
HMAC keys, replay stored notifications."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from common.broker.outbox import publish_event
from common.events import EventType
from common.logging import get_logger
from webhooks import domain, errors, repo
from webhooks.crypto import KeyBox
from webhooks.ingestion import key_aad
from webhooks.schemas import HmacKeyPut

log = get_logger("webhooks.service")

MAX_ACTIVE_KEYS = 2


async def put_key(
    pool: asyncpg.Pool, keybox: KeyBox, tenant_id: str, body: HmacKeyPut
) -> asyncpg.Record:
    async with pool.acquire() as conn, conn.transaction():
        tenant = await repo.lock_tenant(conn, tenant_id)
        if tenant is None or tenant["merchant_account"] != body.merchant_account:
            raise errors.merchant_account_not_yours()
        if len(await repo.active_keys(conn, tenant_id, body.merchant_account)) >= MAX_ACTIVE_KEYS:
            raise errors.hmac_key_limit()
        key_id = repo.new_id("hk")
        sealed = keybox.seal(
            body.key.get_secret_value().lower(), key_aad(tenant_id, body.merchant_account, key_id)
        )
        row = await repo.insert_key(conn, key_id, tenant_id, body.merchant_account, sealed)
    log.info("hmac key added", key_id=key_id, merchant_account=body.merchant_account)
    return row


async def revoke_key(pool: asyncpg.Pool, tenant_id: str, key_id: str) -> asyncpg.Record:
    async with pool.acquire() as conn, conn.transaction():
        row = await repo.revoke_key(conn, tenant_id, key_id)
    if row is None:
        raise errors.hmac_key_not_found()
    log.info("hmac key revoked", key_id=key_id)
    return row


async def replay(pool: asyncpg.Pool, tenant_id: str, ids: Sequence[str]) -> list[str]:
    """Publish stored notifications again (new envelopes, same payload) through the outbox."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await repo.notifications_by_ids(conn, tenant_id, list(dict.fromkeys(ids)))
        if len(rows) != len(set(ids)):
            raise errors.notification_not_found()
        for row in rows:
            item = domain.parse_item(repo.raw_item(row))
            await publish_event(
                conn,
                EventType.PSP_NOTIFICATION_RECEIVED,
                domain.event_data(item, notification_id=row["id"], psp=row["psp"]),
                tenant_id=tenant_id,
                aggregate_id=item.merchant_reference,
            )
    return [row["id"] for row in rows]
