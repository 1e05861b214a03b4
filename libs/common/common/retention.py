"""Retention of the append-only tables (docs/operations.md, "Retention").

Each service declares its rules: a table, the column that dates a row, how long rows are kept,
and a guard, an SQL condition a row must meet as well before it may go (e.g. "its capture is
final"). `purge` deletes what is past its age in batches (short transactions, no long lock),
and only rows the guard lets go. The rules shared by every service:
- `inbox`: a message id must stay longer than the broker could deliver the message again, or a
  redelivery would be applied twice; `INBOX_MIN_AGE` is that floor, and a shorter setting is
  refused;
- `outbox`: only published rows (`published_at` set), dated by their publication.
A service's rules may only lengthen the floors, never shorten them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

# Longer than any path a message can take back to a consumer: retry tiers (seconds to
# minutes), a consumer down for a weekend, a dead-lettered message replayed by an operator.
INBOX_MIN_AGE = timedelta(days=14)
DEFAULT_AGE = timedelta(days=90)


class RetentionError(ValueError):
    """A rule that would delete what an invariant needs."""


@dataclass(frozen=True)
class Rule:
    table: str
    dated_by: str
    keep: timedelta
    guard: str | None = None  # SQL over the table's row (alias `t`): true when it may go
    floor: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if self.keep < self.floor:
            raise RetentionError(
                f"{self.table}: rows must be kept at least {self.floor} (asked {self.keep})"
            )
        for name in (self.table, self.dated_by):
            if not name.replace("_", "").isalnum():
                raise RetentionError(f"not an identifier: {name!r}")


def common_rules(
    inbox: timedelta = INBOX_MIN_AGE, outbox: timedelta = timedelta(days=7)
) -> list[Rule]:
    """The rules of the tables every service has (libs/common/common/sql)."""
    return [
        Rule("inbox", "processed_at", inbox, floor=INBOX_MIN_AGE),
        Rule("outbox", "published_at", outbox, guard="t.published_at IS NOT NULL"),
    ]


@dataclass(frozen=True)
class Purged:
    table: str
    rows: int


async def purge(
    conn: asyncpg.Connection,
    rules: Sequence[Rule],
    *,
    now: datetime,
    batch_size: int = 1000,
) -> list[Purged]:
    """Delete, table by table, the rows past their rule's age that its guard lets go; in
    batches of `batch_size`, each its own transaction. Safe to run from several places at once
    (SKIP LOCKED: a row another run is deleting is left to it)."""
    results = []
    for rule in rules:
        guard = f" AND ({rule.guard})" if rule.guard else ""
        sql = (
            f"DELETE FROM {rule.table} WHERE ctid = ANY (ARRAY("
            f"SELECT t.ctid FROM {rule.table} t WHERE t.{rule.dated_by} < $1{guard}"
            f" LIMIT {int(batch_size)} FOR UPDATE SKIP LOCKED))"
        )
        total = 0
        while True:
            async with conn.transaction():
                status = await conn.execute(sql, now - rule.keep)
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < batch_size:
                break
        results.append(Purged(rule.table, total))
    return results
