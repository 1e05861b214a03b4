"""The `Idempotency-Key` store (DESIGN §4, invariant 5).

`begin` claims a key in a short transaction of its own, so a second request with the same key
sees it at once: same body and done → the stored response is replayed; same body and still
running → 409 `idempotency_concurrent_request`; another body → 422
`idempotency_params_mismatch`. A claim whose holder died is taken over after its lease. A
response under 500 is stored for the retention period; a 5xx or a crash releases the key so the
client's retry runs again, which is why the use cases behind these keys are themselves safe to
run twice (their PSP calls carry deterministic idempotency keys).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from common.db.types import Conn
from common.http.errors import BadRequest, Conflict, Unprocessable

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes
    content_type: str


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    """Hash of what the request asks for; JSON bodies are compared by value, not by bytes."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


def validate_key(key: str | None) -> str:
    if key is None or key == "":
        raise BadRequest(
            "Idempotency-Key is a required header",
            code="idempotency_key_required",
            param="Idempotency-Key",
        )
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise BadRequest(
            "Idempotency-Key must be 1 to 255 printable characters",
            code="idempotency_key_invalid",
            param="Idempotency-Key",
        )
    return key


class IdempotencyStore:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        retention: timedelta = timedelta(days=31),
        lease: timedelta = timedelta(seconds=60),
    ) -> None:
        self._pool = pool
        self._retention = retention
        self._lease = lease

    async def begin(
        self, *, scope: str, key: str, method: str, path: str, fingerprint: str
    ) -> StoredResponse | None:
        """Claim `key`: None means go ahead; a response means replay it; or raise."""
        async with self._pool.acquire() as conn:
            # the common case, a new key, is this one statement (its own transaction)
            claimed = await conn.fetchval(
                """
                INSERT INTO idempotency_keys
                    (scope, key, method, path, request_hash, state, lease_until, expires_at)
                VALUES ($1, $2, $3, $4, $5, 'running', now() + $6, now() + $7)
                ON CONFLICT (scope, key) DO NOTHING
                RETURNING true
                """,
                scope,
                key,
                method,
                path,
                fingerprint,
                self._lease,
                self._retention,
            )
            if claimed:
                return None
            async with conn.transaction():
                return await self._existing(conn, scope, key, fingerprint)

    async def _existing(
        self, conn: Conn, scope: str, key: str, fingerprint: str
    ) -> StoredResponse | None:
        """A key already claimed: replay its response, take over its expired lease, or raise."""
        row = await conn.fetchrow(
            "SELECT request_hash, state, response_status, response_body, response_type,"
            " lease_until < now() AS lease_expired"
            " FROM idempotency_keys WHERE scope = $1 AND key = $2 FOR UPDATE",
            scope,
            key,
        )
        if row is None:  # released between our INSERT and SELECT: the caller may retry
            raise Conflict(
                "a request with this Idempotency-Key just finished; retry",
                code="idempotency_concurrent_request",
            )
        if row["request_hash"] != fingerprint:
            raise Unprocessable(
                "the request parameters do not match those of a previous request"
                " with this Idempotency-Key",
                code="idempotency_params_mismatch",
                param="Idempotency-Key",
            )
        if row["state"] == "done":
            return StoredResponse(
                row["response_status"], bytes(row["response_body"]), row["response_type"]
            )
        if row["lease_expired"]:
            await conn.execute(
                "UPDATE idempotency_keys SET lease_until = now() + $3"
                " WHERE scope = $1 AND key = $2",
                scope,
                key,
                self._lease,
            )
            return None
        raise Conflict(
            "another request with this Idempotency-Key is in progress",
            code="idempotency_concurrent_request",
            param="Idempotency-Key",
        )

    async def complete(self, *, scope: str, key: str, response: StoredResponse) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(
                "UPDATE idempotency_keys SET state = 'done', response_status = $3,"
                " response_body = $4, response_type = $5, expires_at = now() + $6"
                " WHERE scope = $1 AND key = $2",
                scope,
                key,
                response.status,
                response.body,
                response.content_type,
                self._retention,
            )

    async def release(self, *, scope: str, key: str) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(
                "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND state = 'running'",
                scope,
                key,
            )

    async def purge_expired(self) -> int:
        async with self._pool.acquire() as conn:
            result = await conn.execute("DELETE FROM idempotency_keys WHERE expires_at < now()")
        return int(result.split()[-1])
