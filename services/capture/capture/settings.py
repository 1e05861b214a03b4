from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator

from common.config import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "capture"
    db_schema: str = "capture"
    http_port: int = 8083
    psp_base_url: str = "http://127.0.0.1:8090/v71"
    psp_api_key: SecretStr | None = None
    psp_timeout_s: float = Field(default=10.0, gt=0)
    # A claimed capture is the claimant's for this long; past it (the replica died between its
    # PSP call and its commit) another replica sends it again under the same PSP key. It must
    # outlast a PSP call, or a slow call would be overtaken by a second one.
    capture_lease_s: float = Field(default=60.0, gt=0)
    # Waits before the 2nd, 3rd, ... attempt when the PSP gives no answer (timeout, 5xx);
    # len + 1 attempts in all, then the capture fails and waits for an operator.
    capture_retry_delays_s: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
    capture_concurrency: int = Field(default=32, ge=1, le=500)  # PSP calls in flight
    capture_poll_interval_s: float = Field(default=1.0, gt=0)
    scheduler_poll_interval_s: float = Field(default=5.0, gt=0)
    scheduler_batch_size: int = Field(default=100, ge=1, le=1000)
    # Refunds (capture.refunds): PSP retries under the same key, then UNKNOWN and an
    # intervention; a capture or refund unconfirmed this long enters the intervention queue.
    refund_retry_delays_s: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
    refund_poll_interval_s: float = Field(default=1.0, gt=0)
    unconfirmed_after_s: float = Field(default=24 * 3600.0, gt=0)
    unconfirmed_check_interval_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _lease_outlasts_a_call(self) -> Self:
        if self.capture_lease_s <= self.psp_timeout_s:
            raise ValueError("capture_lease_s must be longer than psp_timeout_s")
        if any(delay < 0 for delay in self.capture_retry_delays_s):
            raise ValueError("capture_retry_delays_s must not be negative")
        return self
