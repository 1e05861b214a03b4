"""Numbered, checksummed SQL migrations applied once, under an advisory lock.

Files are named `NNN_description.sql` and live in a service's `migrations/` folder. The shared
tables every service needs (outbox, inbox, idempotency keys, replicas) come from
`common/sql/` as the `common` component and are applied first. N replicas that start together
serialise on `pg_advisory_xact_lock`, so each file is applied exactly once; a file changed
after it was applied stops the start-up with `MigrationError` rather than drifting silently.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from common.db.types import Conn

COMMON_MIGRATIONS = Path(__file__).resolve().parent.parent / "sql"
_NAME = re.compile(r"^(?P<version>\d{3,})_(?P<name>[a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(component: str, directory: Path) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path.name}: migration files are named NNN_description.sql")
        found.append(
            Migration(component, int(match["version"]), match["name"], path.read_text("utf-8"))
        )
    # By number, not by name: "1000_x.sql" comes after "999_y.sql".
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{component}: two migration files share a number")
    return found


async def apply_migrations(conn: Conn, schema: str, components: dict[str, Path]) -> list[str]:
    """Apply pending migrations of each component, in order; return what was applied."""
    plan = [m for component, d in components.items() for m in load_migrations(component, d)]
    applied: list[str] = []
    async with conn.transaction():
        # One lock per schema: replicas of one service wait for each other; others don't.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                component  text        NOT NULL,
                version    integer     NOT NULL,
                name       text        NOT NULL,
                checksum   text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (component, version)
            )
            """
        )
        done = {
            (r["component"], r["version"]): r["checksum"]
            for r in await conn.fetch("SELECT component, version, checksum FROM schema_migrations")
        }
        for migration in plan:
            key = (migration.component, migration.version)
            if key in done:
                if done[key] != migration.checksum:
                    raise MigrationError(
                        f"{migration.component}/{migration.version:03d}_{migration.name}.sql "
                        "changed after it was applied; add a new migration instead"
                    )
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (component, version, name, checksum)"
                " VALUES ($1, $2, $3, $4)",
                migration.component,
                migration.version,
                migration.name,
                migration.checksum,
            )
            applied.append(f"{migration.component}/{migration.version:03d}_{migration.name}")
    return applied
