"""A clock tests move forward instead of sleeping (DELAYED captures, payout schedules, the age
of unknown outcomes): services that take a `clock` read the time from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass
class MovableClock:
    """Wall time plus an offset the test moves forward."""

    offset: timedelta = field(default_factory=timedelta)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, by: timedelta) -> None:
        self.offset += by
