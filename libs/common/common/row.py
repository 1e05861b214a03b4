"""`Row`: what a pure function may read a stored row through (an asyncpg `Record`, a dict, a
mapping) without importing a database driver."""

from __future__ import annotations

from typing import Any, Protocol


class Row(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...
