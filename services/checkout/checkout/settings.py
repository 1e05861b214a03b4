from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from stdnum import iban

from common.config import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "checkout"
    db_schema: str = "checkout"
    http_port: int = 8081
    client_token_ttl_s: int = Field(default=900, ge=60, le=86_400)
    psp_base_url: str = "http://127.0.0.1:8090/v71"
    psp_api_key: SecretStr | None = None
    psp_timeout_s: float = Field(default=10.0, gt=0)
    # the beneficiary account of bank-transfer payments when the tenant names none (an IBAN)
    bank_transfer_iban: str = "DE89370400440532013000"
    overdue_interval_s: float = Field(default=60.0, gt=0)

    @field_validator("bank_transfer_iban")
    @classmethod
    def _iban(cls, value: str) -> str:
        return str(iban.validate(value))
