"""PostgreSQL: one pool per service bound to its own schema, and the migration runner."""

from common.db.migrations import MigrationError, apply_migrations
from common.db.pool import create_pool, provision_service, snapshot

__all__ = ["MigrationError", "apply_migrations", "create_pool", "provision_service", "snapshot"]
