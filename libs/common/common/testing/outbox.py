"""Tests: what a service wrote to its outbox, after the relay has deleted it.

The relay deletes the rows it published (`common.broker.outbox`), so a test that asks "which
events did this change write, in which order" reads `outbox_log` instead: a copy of every row
inserted into `outbox`, made by a trigger in the same transaction. It exists only in test
databases (`record_outbox`, called by `common.testing.apps.running` for every in-process
service), never in a deployed one.
"""

from __future__ import annotations

from common.db.types import Conn

_RECORD = """
CREATE TABLE IF NOT EXISTS outbox_log (LIKE outbox);
CREATE OR REPLACE FUNCTION outbox_log_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox_log SELECT NEW.*;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER outbox_log AFTER INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_log_row();
"""


async def record_outbox(conn: Conn) -> bool:
    """Keep a copy of every outbox row in `outbox_log` (the connection's schema); False when
    the schema has no outbox."""
    if await conn.fetchval("SELECT to_regclass('outbox')") is None:
        return False
    await conn.execute(_RECORD)
    return True
