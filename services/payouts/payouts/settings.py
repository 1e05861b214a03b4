from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from common.config import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "payouts"
    db_schema: str = "payouts"
    http_port: int = 8084
    # how often the ledger check runs for the `ledger_check_*` metrics
    ledger_check_interval_s: float = Field(default=300.0, gt=0)
    # the payout provider (seed 003's "fulfill only" orders; the PSP sandbox locally)
    provider_base_url: str = "http://127.0.0.1:8090/payout"
    provider_api_key: SecretStr | None = None
    provider_timeout_s: float = Field(default=10.0, gt=0)
    # where the provider's callbacks reach us (None: polling only)
    provider_callback_url: str | None = None
    # a PENDING order is polled this often (the callback usually comes first)
    pending_poll_s: float = Field(default=60.0, gt=0)
    # an UNKNOWN payout is polled after these delays (minutes, then hours, then daily)
    unknown_poll_delays_s: tuple[float, ...] = (60, 300, 900, 3600, 6 * 3600, 24 * 3600)
    # past this age an UNKNOWN payout enters the intervention queue (it is never failed)
    unknown_max_age_h: float = Field(default=72.0, gt=0)
    # a claimed payout is the claimant's for this long (longer than a provider call)
    claim_lease_s: float = Field(default=30.0, gt=0)
    # a FAILED payout is retried automatically this long after it failed, as many times as the
    # tenant's payout_schedule.retry_attempts says (then an operator retries it)
    payout_retry_delay_s: float = Field(default=3600.0, ge=0)
    executor_poll_interval_s: float = Field(default=1.0, gt=0)
    executor_concurrency: int = Field(default=16, ge=1, le=200)
    scheduler_poll_interval_s: float = Field(default=60.0, gt=0)
    # marketplace payouts: weekly on Monday morning by default
    marketplace_payout_frequency: Literal["MANUAL", "DAILY", "WEEKLY", "MONTHLY"] = "WEEKLY"
    marketplace_payout_day_of_week: int = Field(default=1, ge=1, le=7)
    marketplace_payout_hour_utc: int = Field(default=6, ge=0, le=23)
