from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """The sandbox keeps its state in memory: it needs no database and no broker."""

    model_config = SettingsConfigDict(env_prefix="MARKETPAY_", extra="ignore", frozen=True)

    service_name: str = "psp_sandbox"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8090, ge=0, le=65535)
    log_level: str = "INFO"
    public_url: str | None = None  # base URL browsers reach it at (3DS challenge page)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # Delays between webhook delivery attempts; len + 1 attempts in all.
    webhook_retry_delays_ms: tuple[int, ...] = (1_000, 5_000, 30_000, 120_000, 600_000)
    token_ttl_s: int = Field(default=3600, ge=1)
    # A company-level API key (as Adyen issues to platforms) that may act for every merchant
    # account, named by `merchantAccount` in each request. None: per-account keys only.
    company_api_key: SecretStr | None = None
    # The payout provider's API key (basic auth user name); None: the company key.
    payout_api_key: SecretStr | None = None
    # Every so often, move what the sandbox holds (payments, modifications, deliveries: it
    # forgets nothing) out of the cyclic garbage collector's full passes (`gc.freeze`), which
    # otherwise walk all of it and pause every request: 0.25 s growing to 1.3 s over a
    # benchmark's run. 0: never, for a sandbox inside another process (a test run), where
    # what it froze would never be collected.
    freeze_state_interval_s: float = Field(default=1.0, ge=0)
