"""Service settings.

Every service has one `Settings` class derived from `ServiceSettings`, read from environment
variables with the `MARKETPAY_` prefix. Credentials have no defaults, except in the clearly
named local-development profile (`MARKETPAY_PROFILE=local`), which fills in the trust-auth
PostgreSQL and guest RabbitMQ of a developer machine.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Profile = Literal["local", "test", "production"]

LOCAL_PROFILE_DEFAULTS: dict[str, str] = {
    "database_url": "postgresql://postgres@127.0.0.1:5432/marketpay",
    "amqp_url": "amqp://guest:guest@127.0.0.1:5672/",
    "platform_admin_key": "local_platform_admin_key",
    # the webhooks service's key for HMAC keys at rest: 32 bytes, hex (local development only)
    "hmac_encryption_key": b"local-dev-hmac-encryption-key-32".hex(),
}


class ServiceSettings(BaseSettings):
    # hide_input_in_errors: a start-up error must not print the other settings (credentials)
    model_config = SettingsConfigDict(
        env_prefix="MARKETPAY_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    profile: Profile = "production"
    service_name: str = "marketpay"
    database_url: SecretStr
    db_schema: str = Field(default="public", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=10, ge=1)
    amqp_url: SecretStr
    broker_namespace: str = Field(default="", pattern=r"^[a-z0-9_.-]*$")
    broker_queue_expires_ms: int | None = Field(default=None, ge=1000)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    log_level: str = "INFO"
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    consumer_prefetch: int = Field(default=50, ge=1)
    # Prefetched messages applied per transaction (one commit each batch): see docs/benchmarks.md
    consumer_batch_size: int = Field(default=20, ge=1, le=500)
    retry_delays_ms: tuple[int, ...] = (1_000, 5_000, 30_000)
    idempotency_retention_days: int = Field(default=31, ge=31)

    @model_validator(mode="before")
    @classmethod
    def _local_profile_defaults(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("profile") == "local":
            for name, default in LOCAL_PROFILE_DEFAULTS.items():
                if name in cls.model_fields:
                    values.setdefault(name, default)
        return values
