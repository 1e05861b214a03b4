"""Ingesting a PSP's notification batch (DESIGN §2 invariant 4, §11).

A request's items are verified first, all of them: the merchant account must belong to a
tenant, and each item's HMAC signature must match one of that account's active keys. One bad
item refuses the whole batch (recorded in the security log, counted, never published); the PSP
sends it again. A verified batch is then stored with its `psp.notification.received` events in
one transaction shared with the batches of concurrent requests (group commit), and the request
is answered only once that transaction has committed.

Storing is idempotent on the dedupe key (psp, pspReference, eventCode, success,
originalReference): a duplicate is acknowledged and not published again; a duplicate whose
amount differs from the stored one is recorded as an anomaly, never applied.

Each merchant account's tenant and decrypted keys are cached for `ttl_s`; a change made through
this replica's API forgets its entry at once, other replicas see it within `ttl_s`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
from cryptography.exceptions import InvalidTag
from prometheus_client import Counter, Histogram

from common.broker.outbox import new_envelope
from common.db.group_commit import GroupCommit
from common.db.types import Conn
from common.events import Envelope, EventType
from common.http.errors import ApiError
from common.logging import get_logger
from common.metrics import Metrics
from webhooks import domain, errors, repo
from webhooks.crypto import KeyBox
from webhooks.domain import Item, Outcome

log = get_logger("webhooks.ingestion")


@dataclass(frozen=True)
class Verified:
    """A verified item, ready to store: its id and its event are made in the request's
    context (its correlation id); the event is published only if the item is new."""

    notification_id: str
    tenant_id: str
    psp: str
    item: Item
    envelope: Envelope


@dataclass(frozen=True)
class Account:
    tenant_id: str
    hmac_keys: tuple[str, ...]


def key_aad(tenant_id: str, merchant_account: str, key_id: str) -> str:
    """What an HMAC key's ciphertext is bound to: a ciphertext moved to another row fails."""
    return f"{tenant_id}\x1f{merchant_account}\x1f{key_id}"


def open_keys(
    keybox: KeyBox, tenant_id: str, merchant_account: str, keys: Sequence[domain.HmacKeyState]
) -> list[tuple[domain.HmacKeyState, str]]:
    """The HMAC keys of `keys` (a merchant account's stored keys), decrypted, each with its
    stored state; a key that does not decrypt with the configured encryption key is logged and
    left out."""
    opened = []
    for key in keys:
        try:
            aad = key_aad(tenant_id, merchant_account, key.id)
            opened.append((key, keybox.open(key.nonce, key.ciphertext, aad)))
        except InvalidTag:
            log.warning(
                "an HMAC key does not decrypt with the configured encryption key",
                key_id=key.id,
                encryption_key_id=key.encryption_key_id,
            )
    return opened


class MerchantAccounts:
    """Merchant account → its tenant and active HMAC keys (decrypted), cached for `ttl_s`."""

    def __init__(self, pool: asyncpg.Pool, keybox: KeyBox, ttl_s: float) -> None:
        self._pool = pool
        self._keybox = keybox
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Account | None]] = {}

    def forget(self, merchant_account: str) -> None:
        self._cache.pop(merchant_account, None)

    async def find(self, merchant_account: str) -> Account | None:
        now = time.monotonic()
        cached = self._cache.get(merchant_account)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        async with self._pool.acquire() as conn:
            tenant_id = await repo.tenant_of_merchant_account(conn, merchant_account)
            rows = (
                await repo.active_keys(conn, tenant_id, merchant_account)
                if tenant_id is not None
                else []
            )
        account = None
        if tenant_id is not None:
            keys = open_keys(self._keybox, tenant_id, merchant_account, rows)
            account = Account(tenant_id, tuple(key for _, key in keys))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[merchant_account] = (now, account)
        return account


async def store(conn: Conn, batch: Sequence[Verified]) -> list[Outcome]:
    """Store a batch (the items of one or several requests) in the caller's transaction.

    Save first, set-based (the dedupe key is the table's: one INSERT ... ON CONFLICT DO NOTHING
    for the batch, and the events of the new ones), then load the stored originals of the
    duplicates, decide (`domain.dedupe`) and save the anomalies (one statement)."""
    fresh = await repo.save_notifications(
        conn,
        [(v.notification_id, v.tenant_id, v.psp, v.item) for v in batch],
        {v.notification_id: v.envelope for v in batch},
    )
    duplicates = [v for v in batch if v.notification_id not in fresh]
    if not duplicates:
        return ["stored"] * len(batch)
    originals = await repo.stored_originals(conn, [(v.psp, v.item) for v in duplicates])
    decided = domain.dedupe(
        [(v.notification_id, v.item) for v in batch],
        fresh,
        {v.notification_id: o for v, o in zip(duplicates, originals, strict=True)},
    )
    await repo.insert_anomalies(conn, decided.anomalies)
    for anomaly in decided.anomalies:
        log.warning(
            "duplicate notification with another amount",
            notification_id=anomaly.original.id,
            psp_reference=anomaly.original.psp_reference,
        )
    return decided.outcomes


class Ingestion:
    def __init__(
        self,
        pool: asyncpg.Pool,
        accounts: MerchantAccounts,
        metrics: Metrics,
        *,
        max_batch_items: int = 500,
        writers: int = 2,
    ) -> None:
        self._pool = pool
        self._accounts = accounts
        self._metrics = metrics
        self._notifications = Counter(
            "psp_notifications",
            "PSP notification items by outcome",
            ["outcome"],
            registry=metrics.registry,
        )
        self._batch_items = Histogram(
            "psp_notification_commit_items",
            "Notification items stored per transaction (group commit)",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
            registry=metrics.registry,
        )
        self._group: GroupCommit[Verified, Outcome] = GroupCommit(
            pool,
            store,
            max_items=max_batch_items,
            writers=writers,
            on_batch=lambda _requests, items: self._batch_items.observe(items),
        )

    async def start(self) -> None:
        await self._group.start()

    async def stop(self) -> None:
        await self._group.stop()

    async def ingest(self, *, psp: str, items: Sequence[Item], remote: str | None) -> None:
        """Verify every item, then store them; return once they are committed."""
        verified = [await self._verify(psp, item, remote) for item in items]
        for outcome in await self._group.submit(verified):
            self._notifications.labels(outcome).inc()

    async def record_malformed(self, psp: str, payload: object, remote: str | None) -> None:
        """A refused malformed batch (a negative amount, a missing field) in the security log,
        under the tenant of its first item's merchant account when that is one of ours, so
        that operators see what the PSP sent and was never applied."""
        entries = payload.get("notificationItems") if isinstance(payload, dict) else None
        first = entries[0] if isinstance(entries, list) and entries else None
        raw = first.get("NotificationRequestItem") if isinstance(first, dict) else None
        raw = raw if isinstance(raw, dict) else {}
        merchant_account = raw.get("merchantAccountCode")
        account = None
        if (
            isinstance(merchant_account, str)
            and 0 < len(merchant_account) <= domain.MAX_TEXT
            and "\x00" not in merchant_account
            and merchant_account.isprintable()
        ):
            try:
                merchant_account.encode("utf-8")
                account = await self._accounts.find(merchant_account)
            except UnicodeEncodeError:  # a lone surrogate: not one of ours
                account = None
        async with self._pool.acquire() as conn:
            await repo.log_security_event(
                conn,
                psp=psp,
                reason="invalid_notification",
                tenant_id=account.tenant_id if account is not None else None,
                merchant_account=merchant_account,
                psp_reference=raw.get("pspReference"),
                event_code=raw.get("eventCode"),
                remote=remote,
            )
        self._metrics.security_events.labels("invalid_notification").inc()

    async def _verify(self, psp: str, item: Item, remote: str | None) -> Verified:
        account = await self._accounts.find(item.merchant_account)
        reason = domain.refusal(item, account.hmac_keys if account is not None else None)
        if reason is not None:
            error = (
                errors.merchant_account_unknown()
                if reason == "merchant_account_unknown"
                else errors.signature_invalid()
            )
            tenant_id = account.tenant_id if account is not None else None
            raise await self._refuse(psp, reason, item, tenant_id, remote, error)
        assert account is not None  # accepted: its merchant account has a tenant
        item = domain.without_cardholder_data(item)
        notification_id = repo.new_id("ntf")
        envelope = new_envelope(
            EventType.PSP_NOTIFICATION_RECEIVED,
            domain.event_data(item, notification_id=notification_id, psp=psp),
            tenant_id=account.tenant_id,
        )
        return Verified(notification_id, account.tenant_id, psp, item, envelope)

    async def _refuse(
        self,
        psp: str,
        reason: str,
        item: Item,
        tenant_id: str | None,
        remote: str | None,
        error: ApiError,
    ) -> ApiError:
        async with self._pool.acquire() as conn:
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
        self._metrics.security_events.labels(reason).inc()
        log.warning(
            "psp notification refused",
            reason=reason,
            merchant_account=item.merchant_account,
            psp_reference=item.psp_reference,
            remote=remote,
        )
        return error
