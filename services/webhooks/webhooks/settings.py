from __future__ import annotations

from pydantic import Field, SecretStr

from common.config import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "webhooks"
    db_schema: str = "webhooks"
    http_port: int = 8082
    # encrypts the PSP HMAC keys at rest (AES-256-GCM): 32 bytes, as hex or base64
    hmac_encryption_key: SecretStr
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # how long a merchant account's tenant and HMAC keys are cached: a key added or revoked
    # through another replica is seen here within this delay
    hmac_key_cache_ttl_s: float = Field(default=5.0, ge=0)
    # group commit: notification items per transaction at most, transactions in flight at once
    group_commit_max_items: int = Field(default=500, ge=1, le=5000)
    group_commit_writers: int = Field(default=2, ge=1, le=16)
