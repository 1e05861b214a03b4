"""Webhook use cases besides ingestion (`webhooks.ingestion`): manage a merchant account's
HMAC keys, replay stored notifications. Each runs in the caller's transaction (opened at the
edge: the API handler) and reads load -> decide (`webhooks.domain`) -> save (one repo call)."""

from __future__ import annotations

from common.db.types import Conn
from common.logging import get_logger
from webhooks import domain, errors, repo
from webhooks.crypto import KeyBox
from webhooks.ingestion import key_aad, open_keys
from webhooks.schemas import MAX_RANGE_REPLAY, HmacKeyPut, ReplayRequest

log = get_logger("webhooks.service")

MAX_ACTIVE_KEYS = domain.MAX_ACTIVE_KEYS


async def put_key(
    conn: Conn, keybox: KeyBox, tenant_id: str, body: HmacKeyPut
) -> tuple[domain.HmacKeyState, bool]:
    """Add the key, or find it active already (putting the same key again changes nothing);
    the key, and whether it was added.

    Load: the tenant's merchant account (its replica row locked: a tenant's key changes are
    serialised) and the account's active keys, opened; decide: `domain.decide_key_put`;
    save: the sealed key."""
    key = body.key.get_secret_value().lower()
    owned = await repo.lock_tenant_merchant_account(conn, tenant_id)
    active = (
        await repo.active_keys(conn, tenant_id, body.merchant_account)
        if owned == body.merchant_account
        else []
    )
    try:
        existing = domain.decide_key_put(
            tenant_merchant_account=owned,
            merchant_account=body.merchant_account,
            key=key,
            active=open_keys(keybox, tenant_id, body.merchant_account, active),
        )
    except domain.KeyRefused as exc:
        if exc.code == "hmac_key_limit":
            raise errors.hmac_key_limit() from None
        raise errors.merchant_account_not_yours() from None
    if existing is not None:
        return existing, False
    key_id = repo.new_id("hk")
    sealed = keybox.seal(key, key_aad(tenant_id, body.merchant_account, key_id))
    stored = await repo.insert_key(conn, key_id, tenant_id, body.merchant_account, sealed)
    log.info("hmac key added", key_id=key_id, merchant_account=body.merchant_account)
    return stored, True


async def revoke_key(conn: Conn, tenant_id: str, key_id: str) -> domain.HmacKeyState:
    """Revoke the key; revoking a revoked key changes nothing (one statement)."""
    key = await repo.revoke_key(conn, tenant_id, key_id)
    if key is None:
        raise errors.hmac_key_not_found()
    log.info("hmac key revoked", key_id=key_id)
    return key


async def replay(conn: Conn, tenant_id: str, request: ReplayRequest) -> list[str]:
    """Publish stored notifications again (new envelopes, same payload) through the outbox,
    in the order they were received; consumers apply each one once.

    Load: the notifications by id, or of the reception range (one more than the limit);
    decide: `domain.replay_selection` and `domain.replay_events`; save: `repo.enqueue_replayed`."""
    if request.ids is not None:
        found = await repo.notifications_by_ids(conn, tenant_id, list(dict.fromkeys(request.ids)))
    else:
        received_from, received_to = request.reception_range()
        found = await repo.notifications_received(
            conn,
            tenant_id,
            received_from,
            received_to,
            request.event_code,
            MAX_RANGE_REPLAY + 1,
        )
    try:
        selected = domain.replay_selection(found, wanted=request.ids, limit=MAX_RANGE_REPLAY)
    except domain.ReplayRefused as exc:
        if exc.code == "replay_range_too_large":
            raise errors.replay_range_too_large(MAX_RANGE_REPLAY) from None
        raise errors.notification_not_found() from None
    await repo.enqueue_replayed(conn, tenant_id, domain.replay_events(selected))
    return [notification.id for notification in selected]
