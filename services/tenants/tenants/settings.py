from __future__ import annotations

from typing import Literal

from pydantic import SecretStr

from common.config import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "tenants"
    db_schema: str = "tenants"
    http_port: int = 8086
    platform_admin_key: SecretStr
    api_key_environment: Literal["test", "live"] = "test"
