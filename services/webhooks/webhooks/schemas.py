"""The operator API's pydantic models. The HMAC key is write-only: no model returns it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

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


MAX_RANGE_REPLAY = 1000


class ReplayRequest(BaseModel):
    """Either `ids` (up to 100 notifications), or a range of reception times (inclusive,
    optionally one event code): up to 1000 notifications, oldest first."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str] | None = Field(default=None, min_length=1, max_length=100)
    received_from: AwareDatetime | None = None
    received_to: AwareDatetime | None = None
    event_code: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _one_selection(self) -> ReplayRequest:
        in_range = self.received_from is not None or self.received_to is not None
        if self.ids is not None and (in_range or self.event_code is not None):
            raise PydanticCustomError(
                "replay_selection_invalid", "give ids, or a range of reception times, not both"
            )
        if self.ids is None and (self.received_from is None or self.received_to is None):
            raise PydanticCustomError(
                "replay_selection_invalid", "give ids, or both received_from and received_to"
            )
        if self.received_from and self.received_to and self.received_from > self.received_to:
            raise PydanticCustomError(
                "replay_selection_invalid", "received_from is after received_to"
            )
        return self

    def reception_range(self) -> tuple[datetime, datetime]:
        if self.received_from is None or self.received_to is None:
            raise ValueError("not a range replay")
        return self.received_from, self.received_to


class ReplayResult(BaseModel):
    replayed: list[str]
