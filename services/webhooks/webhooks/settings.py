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
