from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from common.config import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "exports"
    db_schema: str = "exports"
    http_port: int = 8085
    # Where files go: a local directory (one machine) or S3-compatible object storage (several
    # replicas on several machines must share it).
    storage: Literal["local", "s3"] = "local"
    storage_dir: str = "var/exports"
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None  # e.g. a MinIO, or a local stand-in; None: AWS
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None  # None: the usual AWS credential chain
    s3_secret_access_key: SecretStr | None = None
    s3_part_size_bytes: int = Field(default=8 * 1024 * 1024, ge=5 * 1024 * 1024)
    # A file stays downloadable this long after it is ready, then the job is EXPIRED and the
    # file deleted.
    retention_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    # A running job is its worker's for this long past the last heartbeat; past it (the worker
    # died) another replica takes the job over.
    lease_s: float = Field(default=30.0, gt=0)
    heartbeat_s: float = Field(default=5.0, gt=0)
    worker_poll_interval_s: float = Field(default=2.0, gt=0)
    worker_concurrency: int = Field(default=2, ge=1, le=32)  # exports written at once
    max_attempts: int = Field(default=3, ge=1, le=20)
    retry_delay_s: float = Field(default=5.0, ge=0)  # after a failed attempt, before the next
    expiry_sweep_interval_s: float = Field(default=60.0, gt=0)
    # Caps one export's output rate (bytes/s) to spare a shared disk or database; None: none.
    throttle_bytes_per_s: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if self.heartbeat_s >= self.lease_s:
            raise ValueError("heartbeat_s must be shorter than lease_s")
        if self.storage == "s3" and not self.s3_bucket:
            raise ValueError("storage=s3 needs s3_bucket")
        return self
