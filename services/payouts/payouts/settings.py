from __future__ import annotations

from pydantic import Field

from common.config import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "payouts"
    db_schema: str = "payouts"
    http_port: int = 8084
    # how often the ledger check runs for the `ledger_check_*` metrics
    ledger_check_interval_s: float = Field(default=300.0, gt=0)
