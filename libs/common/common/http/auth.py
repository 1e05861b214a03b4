"""Bearer API keys and the principal they stand for (DESIGN §4, invariant 6).

A key is `<env>_<random>` (`test_` or `live_`), shown once at creation and stored only as its
SHA-256 (the secret has 256 bits of entropy, so a fast hash is enough and lookups stay O(1)).
Tenancy always comes from the key, never from the request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import SecretStr

Environment = Literal["test", "live"]
RoleName = Literal["platform_admin", "operator", "supplier", "storefront", "client", "anonymous"]
"""`client`: a browser holding a short-lived client token bound to one resource (`subject`);
`anonymous`: a public route's caller, who is granted nothing."""


@dataclass(frozen=True)
class Principal:
    role: RoleName
    tenant_id: str | None
    supplier_id: str | None = None
    key_id: str | None = None
    subject: str | None = None

    @property
    def scope(self) -> str:
        """Whose idempotency keys this principal shares: its tenant's, or, for a client
        token, only those of the one resource the token is bound to."""
        if self.role == "anonymous":
            raise RuntimeError("an anonymous caller has no idempotency scope")
        if self.subject is not None:
            return f"{self.tenant_id}:{self.subject}"
        return self.tenant_id or "platform"


ANONYMOUS = Principal(role="anonymous", tenant_id=None)


def generate_key(environment: Environment) -> str:
    return f"{environment}_{secrets.token_urlsafe(32)}"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


KeyLookup = Callable[[str], Awaitable[Principal | None]]
"""Find the active (not revoked) key with this hash."""


class Authenticator:
    def __init__(self, lookup: KeyLookup, platform_admin_key: SecretStr | None = None) -> None:
        self._lookup = lookup
        self._admin_hash = (
            hash_key(platform_admin_key.get_secret_value()) if platform_admin_key else None
        )

    async def authenticate(self, authorization: str | None) -> Principal | None:
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 200:
            return None
        digest = hash_key(token)
        if self._admin_hash is not None and hmac.compare_digest(digest, self._admin_hash):
            return Principal(role="platform_admin", tenant_id=None)
        return await self._lookup(digest)
