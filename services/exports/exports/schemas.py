"""Exports' HTTP input and output models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from exports.domain import ExportStatus, ExportType


class ExportCreate(BaseModel):
    """`filters` depend on `type` (see docs/exports.md); they are validated against the
    type's filter model, and an unknown filter is refused."""

    model_config = ConfigDict(extra="forbid")

    type: ExportType
    filters: dict[str, Any] = Field(default_factory=dict)


class ExportError(BaseModel):
    code: str
    message: str


class Export(BaseModel):
    id: str
    type: ExportType
    status: ExportStatus
    filters: dict[str, Any]
    supplier_id: str | None = Field(description="set for a supplier's export: its scope")
    rows_written: int
    rows_total: int | None = Field(description="known once the worker has counted the rows")
    size_bytes: int | None
    attempt: int
    error: ExportError | None
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    expires_at: datetime | None
    download_url: str | None = Field(description="the download path, once READY")
