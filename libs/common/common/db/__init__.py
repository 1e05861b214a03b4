"""PostgreSQL: one pool per service bound to its own schema, and the migration runner."""

from common.db.migrations import MigrationError, apply_migrations
from common.db.pool import create_pool, provision_service, snapshot
from common.db.types import Conn, Row

__all__ = [
    "Conn",
    "MigrationError",
    "Row",
    "apply_migrations",
    "create_pool",
    "provision_service",
    "snapshot",
]
