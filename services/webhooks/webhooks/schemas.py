"""The operator API's pydantic models. The HMAC key is write-only: no model returns it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from common.money import Money
from webhooks.domain import is_hex_key


class HmacKeyPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    merchant_account: str = Field(min_length=1, max_length=200)
    key: SecretStr

    @field_validator("key")
    @classmethod
    def _hex(cls, value: SecretStr) -> SecretStr:
        if not is_hex_key(value.get_secret_value()):
            raise ValueError("key must be 64 hex digits")
        return value


class HmacKey(BaseModel):
    id: str
    merchant_account: str
    created_at: datetime
    revoked_at: datetime | None


class Notification(BaseModel):
    id: str
    accepted: bool
    psp: str
    merchant_account: str | None
    event_code: str | None
    success: bool | None
    psp_reference: str | None
    original_reference: str | None
    merchant_reference: str | None
    amount: Money | None
    refusal_reason: str | None
    received_at: datetime
    item: dict[str, Any] | None


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: list[str] = Field(min_length=1, max_length=100)


class ReplayResult(BaseModel):
    replayed: list[str]
