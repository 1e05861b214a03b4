"""The webhooks service's SQL."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from common.broker.outbox import enqueue_many, new_envelope, outbox_insert, outbox_values
from common.db.types import Conn
from common.events import Envelope, EventType, PspNotificationReceived
from common.http.pagination import Filter, ListSpec, PageInfo, fetch_list
from webhooks.crypto import Sealed
from webhooks.domain import (
    Anomaly,
    HmacKeyState,
    Item,
    NotificationView,
    StoredNotification,
    StoredOriginal,
)


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


async def tenant_of_merchant_account(conn: Conn, merchant_account: str) -> str | None:
    tenant_id: str | None = await conn.fetchval(
        "SELECT tenant_id FROM replica_tenants WHERE merchant_account = $1"
        " ORDER BY updated_at DESC LIMIT 1",
        merchant_account,
    )
    return tenant_id


_KEY_COLUMNS = (
    "id, tenant_id, merchant_account, nonce, ciphertext, encryption_key_id, created_at, revoked_at"
)


def _key(row: asyncpg.Record) -> HmacKeyState:
    return HmacKeyState(
        id=row["id"],
        tenant_id=row["tenant_id"],
        merchant_account=row["merchant_account"],
        nonce=row["nonce"],
        ciphertext=row["ciphertext"],
        encryption_key_id=row["encryption_key_id"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


async def active_keys(conn: Conn, tenant_id: str, merchant_account: str) -> list[HmacKeyState]:
    rows = await conn.fetch(
        f"SELECT {_KEY_COLUMNS}"
        " FROM hmac_keys WHERE tenant_id = $1 AND merchant_account = $2"
        " AND revoked_at IS NULL ORDER BY created_at",
        tenant_id,
        merchant_account,
    )
    return [_key(row) for row in rows]


async def insert_key(
    conn: Conn, key_id: str, tenant_id: str, merchant_account: str, sealed: Sealed
) -> HmacKeyState:
    row = await conn.fetchrow(
        "INSERT INTO hmac_keys"
        " (id, tenant_id, merchant_account, nonce, ciphertext, encryption_key_id)"
        f" VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_KEY_COLUMNS}",
        key_id,
        tenant_id,
        merchant_account,
        sealed.nonce,
        sealed.ciphertext,
        sealed.key_id,
    )
    assert row is not None  # RETURNING the row just written
    return _key(row)


async def revoke_key(conn: Conn, tenant_id: str, key_id: str) -> HmacKeyState | None:
    """Revoke the key (revoking it again changes nothing); None if the tenant has no such key."""
    row = await conn.fetchrow(
        "UPDATE hmac_keys SET revoked_at = coalesce(revoked_at, now())"
        f" WHERE id = $1 AND tenant_id = $2 RETURNING {_KEY_COLUMNS}",
        key_id,
        tenant_id,
    )
    return None if row is None else _key(row)


async def lock_tenant_merchant_account(conn: Conn, tenant_id: str) -> str | None:
    """The tenant's merchant account (None: no such tenant in the replica), its replica row
    locked: a tenant's key changes are serialised."""
    merchant_account: str | None = await conn.fetchval(
        "SELECT merchant_account FROM replica_tenants WHERE tenant_id = $1 FOR UPDATE",
        tenant_id,
    )
    return merchant_account


async def save_notifications(
    conn: Conn, rows: Sequence[tuple[str, str, str, Item]], events: Mapping[str, Envelope]
) -> set[str]:
    """Insert `(notification id, tenant id, psp, item)` rows and enqueue the event (`events`,
    by notification id) of each that was new, in the caller's transaction and in one
    statement; return the ids of those (a duplicate of a stored notification, or of an
    earlier row, is skipped)."""
    if not rows:
        return set()
    if not conn.is_in_transaction():
        raise RuntimeError("notifications are saved in the transaction that enqueues them")
    ids = [r[0] for r in rows]
    inserted = await conn.fetch(
        "WITH ins AS (INSERT INTO notifications (id, tenant_id, psp, merchant_account,"
        " event_code, success, psp_reference, original_reference, merchant_reference, amount,"
        " currency, raw)"
        " SELECT r.id, r.tenant_id, r.psp, r.merchant_account, r.event_code, r.success,"
        " r.psp_reference, r.original_reference, r.merchant_reference, r.amount, r.currency,"
        " r.raw::jsonb"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[],"
        " $7::text[], $8::text[], $9::text[], $10::bigint[], $11::text[], $12::text[])"
        " WITH ORDINALITY AS r(id, tenant_id, psp, merchant_account, event_code, success,"
        " psp_reference, original_reference, merchant_reference, amount, currency, raw, n)"
        " ORDER BY r.n"
        " ON CONFLICT ON CONSTRAINT notifications_dedupe DO NOTHING RETURNING id),"
        # the event of row n is written only if row n was: its id ($1[n]) came back
        f" o AS ({outbox_insert(13, where='WHERE ($1::text[])[e.n] IN (SELECT id FROM ins)')})"
        " SELECT id FROM ins",
        ids,
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3].merchant_account for r in rows],
        [r[3].event_code for r in rows],
        [r[3].success for r in rows],
        [r[3].psp_reference for r in rows],
        [r[3].original_reference or "" for r in rows],
        [r[3].merchant_reference for r in rows],
        [r[3].amount_value for r in rows],
        [r[3].currency for r in rows],
        [json.dumps(r[3].raw) for r in rows],
        *outbox_values([(events[id_], item.merchant_reference) for id_, _, _, item in rows]),
    )
    return {row["id"] for row in inserted}


async def stored_originals(conn: Conn, items: Sequence[tuple[str, Item]]) -> list[StoredOriginal]:
    """The stored notification with the dedupe key of each `(psp, item)`, in the same order."""
    rows = await conn.fetch(
        "SELECT k.n, s.id, s.tenant_id, s.psp_reference, s.amount, s.currency"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::text[])"
        " WITH ORDINALITY AS k(psp, psp_reference, event_code, success, original_reference, n)"
        " JOIN notifications s USING (psp, psp_reference, event_code, success,"
        " original_reference) ORDER BY k.n",
        [psp for psp, _ in items],
        [item.psp_reference for _, item in items],
        [item.event_code for _, item in items],
        [item.success for _, item in items],
        [item.original_reference or "" for _, item in items],
    )
    if len(rows) != len(items):
        raise RuntimeError("a duplicate notification has no stored original")
    return [
        StoredOriginal(
            id=row["id"],
            tenant_id=row["tenant_id"],
            psp_reference=row["psp_reference"],
            amount=row["amount"],
            currency=row["currency"],
        )
        for row in rows
    ]


async def insert_anomalies(conn: Conn, anomalies: Sequence[Anomaly]) -> None:
    """Record the anomalies of a batch (one statement)."""
    if not anomalies:
        return
    await conn.executemany(
        "INSERT INTO anomalies"
        " (tenant_id, notification_id, kind, stored_amount, received_amount, raw)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        [
            (
                anomaly.original.tenant_id,
                anomaly.original.id,
                anomaly.kind,
                anomaly.original.amount,
                anomaly.item.amount_value,
                dict(anomaly.item.raw),
            )
            for anomaly in anomalies
        ],
    )


async def log_security_event(
    conn: Conn,
    *,
    psp: str,
    reason: str,
    tenant_id: str | None,
    merchant_account: str | None,
    psp_reference: str | None,
    event_code: str | None,
    remote: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO security_log (id, tenant_id, psp, reason, merchant_account, psp_reference,"
        " event_code, remote) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        new_id("sec"),
        tenant_id,
        psp,
        reason,
        _clip(merchant_account),
        _clip(psp_reference),
        _clip(event_code),
        remote,
    )


def _clip(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    cleaned = value.replace("\x00", "")[:200]
    try:
        cleaned.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return cleaned


_NOTIFICATION_COLUMNS = (
    "id, true AS accepted, psp, merchant_account, event_code, success, psp_reference,"
    " nullif(original_reference, '') AS original_reference, merchant_reference, amount,"
    " currency, NULL::text AS refusal_reason, created_at, raw"
)
_REFUSED_COLUMNS = (
    "id, false AS accepted, psp, merchant_account, event_code, NULL::boolean AS success,"
    " psp_reference, NULL::text AS original_reference, NULL::text AS merchant_reference,"
    " NULL::bigint AS amount, NULL::text AS currency, reason AS refusal_reason, created_at,"
    " NULL::jsonb AS raw"
)


NOTIFICATION_LIST = ListSpec(
    table="notifications",
    columns=_NOTIFICATION_COLUMNS,
    filters=(
        Filter("psp_reference", "psp_reference = {}", "the PSP's reference"),
        Filter("event_code", "event_code = {}", "AUTHORISATION, CANCELLATION, ..."),
        Filter(
            "accepted",
            None,
            "true (default): stored notifications; false: refused deliveries",
            "boolean",
        ),
        Filter("received_from", "created_at >= {}", "ISO 8601, inclusive", "datetime"),
        Filter("received_to", "created_at <= {}", "ISO 8601, inclusive", "datetime"),
    ),
)


def _view(row: asyncpg.Record) -> NotificationView:
    return NotificationView(
        id=row["id"],
        accepted=row["accepted"],
        psp=row["psp"],
        merchant_account=row["merchant_account"],
        event_code=row["event_code"],
        success=row["success"],
        psp_reference=row["psp_reference"],
        original_reference=row["original_reference"],
        merchant_reference=row["merchant_reference"],
        amount=row["amount"],
        currency=row["currency"],
        refusal_reason=row["refusal_reason"],
        created_at=row["created_at"],
        raw=None if row["raw"] is None else _raw(row["raw"]),
    )


async def notification_page(
    conn: Conn, tenant_id: str, query: Mapping[str, str]
) -> tuple[list[NotificationView], PageInfo]:
    """Stored notifications, or (`accepted=false`) the refused deliveries."""
    accepted = NOTIFICATION_LIST.value(query, "accepted", default=True)
    rows, info = await fetch_list(
        conn,
        NOTIFICATION_LIST,
        query,
        scope=[("tenant_id = {}", tenant_id)],
        table=None if accepted else "security_log",
        columns=None if accepted else _REFUSED_COLUMNS,
    )
    return [_view(row) for row in rows], info


async def notification(conn: Conn, tenant_id: str, id_: str) -> NotificationView | None:
    row = await conn.fetchrow(
        f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        id_,
    )
    if row is None:
        row = await conn.fetchrow(
            f"SELECT {_REFUSED_COLUMNS} FROM security_log WHERE tenant_id = $1 AND id = $2",
            tenant_id,
            id_,
        )
    return None if row is None else _view(row)


def _stored(row: asyncpg.Record) -> StoredNotification:
    return StoredNotification(
        id=row["id"], tenant_id=row["tenant_id"], psp=row["psp"], raw=_raw(row["raw"])
    )


async def notifications_received(
    conn: Conn,
    tenant_id: str,
    received_from: datetime,
    received_to: datetime,
    event_code: str | None,
    limit: int,
) -> list[StoredNotification]:
    """Stored notifications received in [from, to] (inclusive), oldest first, at most `limit`."""
    rows = await conn.fetch(
        "SELECT id, tenant_id, psp, raw FROM notifications"
        " WHERE tenant_id = $1 AND created_at >= $2 AND created_at <= $3"
        " AND ($4::text IS NULL OR event_code = $4) ORDER BY created_at, id LIMIT $5",
        tenant_id,
        received_from,
        received_to,
        event_code,
        limit,
    )
    return [_stored(row) for row in rows]


async def notifications_by_ids(
    conn: Conn, tenant_id: str, ids: Sequence[str]
) -> list[StoredNotification]:
    """The tenant's stored notifications of these ids, in the order they were received."""
    rows = await conn.fetch(
        "SELECT id, tenant_id, psp, raw FROM notifications"
        " WHERE tenant_id = $1 AND id = ANY($2::text[]) ORDER BY created_at, id",
        tenant_id,
        list(ids),
    )
    return [_stored(row) for row in rows]


async def enqueue_replayed(
    conn: Conn, tenant_id: str, events: Sequence[tuple[PspNotificationReceived, str]]
) -> None:
    """Enqueue replayed `psp.notification.received` events (new envelopes), in one statement,
    in the caller's transaction."""
    await enqueue_many(
        conn,
        [
            (
                new_envelope(EventType.PSP_NOTIFICATION_RECEIVED, data, tenant_id=tenant_id),
                merchant_reference,
            )
            for data, merchant_reference in events
        ],
    )


def _raw(raw: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else dict(raw)
    return parsed
