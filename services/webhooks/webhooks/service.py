"""Webhook use cases: ingest a verified batch, manage HMAC keys, replay notifications.

Ingestion verifies every item before it stores any: a batch with one bad item is refused as a
whole (the PSP retries it), and what is stored, with its events in the outbox, commits in one
transaction before the PSP hears `[accepted]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from cryptography.exceptions import InvalidTag

from common.broker.outbox import publish_event
from common.events import EventType
from common.http.errors import ApiError
from common.logging import get_logger
from common.metrics import Metrics
from common.psp.hmac import verify_signature
from webhooks import domain, errors, repo
from webhooks.crypto import KeyBox
from webhooks.domain import Item
from webhooks.schemas import HmacKeyPut

log = get_logger("webhooks.service")

MAX_ACTIVE_KEYS = 2


@dataclass(frozen=True)
class Ingested:
    stored: int
    duplicates: int
    anomalies: int


def _aad(tenant_id: str, merchant_account: str, key_id: str) -> str:
    return f"{tenant_id}\x1f{merchant_account}\x1f{key_id}"


async def hmac_keys_of(
    conn: asyncpg.Connection, keybox: KeyBox, tenant_id: str, merchant_account: str
) -> list[str]:
    keys = []
    for row in await repo.active_keys(conn, tenant_id, merchant_account):
        try:
            keys.append(
                keybox.open(
                    row["nonce"],
                    row["ciphertext"],
                    _aad(tenant_id, merchant_account, row["id"]),
                )
            )
        except InvalidTag:
            log.warning(
                "an HMAC key does not decrypt with the configured encryption key",
                key_id=row["id"],
                encryption_key_id=row["encryption_key_id"],
            )
    return keys


async def _refuse(
    conn: asyncpg.Connection,
    metrics: Metrics,
    *,
    psp: str,
    reason: str,
    item: Item,
    tenant_id: str | None,
    remote: str | None,
    error: ApiError,
) -> ApiError:
    await repo.log_security_event(
        conn,
        psp=psp,
        reason=reason,
        tenant_id=tenant_id,
        merchant_account=item.merchant_account,
        psp_reference=item.psp_reference,
        event_code=item.event_code,
        remote=remote,
    )
    metrics.security_events.labels(reason).inc()
    log.warning(
        "psp notification refused",
        reason=reason,
        merchant_account=item.merchant_account,
        psp_reference=item.psp_reference,
        remote=remote,
    )
    return error


async def ingest(
    pool: asyncpg.Pool,
    keybox: KeyBox,
    metrics: Metrics,
    *,
    psp: str,
    items: Sequence[Item],
    remote: str | None,
) -> Ingested:
    async with pool.acquire() as conn:
        verified: list[tuple[str, Item]] = []
        for item in items:
            tenant_id = await repo.tenant_of_merchant_account(conn, item.merchant_account)
            if tenant_id is None:
                raise await _refuse(
                    conn,
                    metrics,
                    psp=psp,
                    reason="merchant_account_unknown",
                    item=item,
                    tenant_id=None,
                    remote=remote,
                    error=errors.merchant_account_unknown(),
                )
            keys = await hmac_keys_of(conn, keybox, tenant_id, item.merchant_account)
            if not verify_signature(item.raw, keys):
                additional = item.raw.get("additionalData") or {}
                missing = not additional.get("hmacSignature")
                raise await _refuse(
                    conn,
                    metrics,
                    psp=psp,
                    reason="hmac_signature_missing" if missing else "hmac_signature_invalid",
                    item=item,
                    tenant_id=tenant_id,
                    remote=remote,
                    error=errors.signature_invalid(),
                )
            verified.append((tenant_id, item))
        stored = duplicates = anomalies = 0
        async with conn.transaction():
            for tenant_id, item in verified:
                notification_id = repo.new_id("ntf")
                if await repo.insert_notification(conn, notification_id, tenant_id, psp, item):
                    stored += 1
                    await publish_event(
                        conn,
                        EventType.PSP_NOTIFICATION_RECEIVED,
                        domain.event_data(item, notification_id=notification_id, psp=psp),
                        tenant_id=tenant_id,
                        aggregate_id=item.merchant_reference,
                    )
                    continue
                duplicates += 1
                original = await repo.stored_duplicate(conn, psp, item)
                if original is not None and (original["amount"], original["currency"]) != (
                    item.amount_value,
                    item.currency,
                ):
                    anomalies += 1
                    await repo.insert_anomaly(conn, original, "amount_mismatch", item)
                    log.warning(
                        "duplicate notification with another amount",
                        notification_id=original["id"],
                        psp_reference=item.psp_reference,
                    )
    return Ingested(stored=stored, duplicates=duplicates, anomalies=anomalies)


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
            body.key.get_secret_value().lower(), _aad(tenant_id, body.merchant_account, key_id)
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
