"""Transactions that wake the outbox relay after their commit, not inside it.

A transaction that sends a NOTIFY takes a cluster-wide lock at commit and holds it through its
WAL flush: PostgreSQL serialises the commits of all such transactions, so they cannot share a
flush (group commit) and, under load, queue one fsync at a time. The outbox trigger notifies
inside the writing transaction; the hot writers (the inbox consumers' transactions, the group
commit) instead tell the trigger to stay silent (`BEGIN_SILENT`: it only notes that the outbox
was written) and send the notification, when it was, in a transaction of its own right after
their COMMIT, in the same round trip (`COMMIT_NOTIFY`).
That transaction writes nothing, so its commit waits for no flush and holds the lock for
microseconds.

If the connection breaks between the two, the relay's poll finds the rows (a lost
notification only delays, as before).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from common.db.types import Conn

BEGIN_SILENT = "BEGIN; SET LOCAL marketpay.outbox_notify = 'after_commit'"
"""Open a transaction whose outbox rows the trigger does not notify about."""

COMMIT_NOTIFY = (
    "COMMIT; SELECT pg_notify('outbox_' || current_schema(), '')"
    " WHERE current_setting('marketpay.outbox_written', true) = 'yes';"
    " SELECT set_config('marketpay.outbox_written', '', false)"
)
"""Commit, then, if the transaction wrote the outbox, wake the relay of this schema in a
transaction of its own (a consumer whose handlers wrote no event wakes nobody)."""


@contextlib.asynccontextmanager
async def transaction_notifying_after_commit(conn: Conn) -> AsyncIterator[None]:
    """`conn.transaction()` for a writer of the outbox, with the relay woken after the commit.
    Rolled back if the block raises."""
    await conn.execute(BEGIN_SILENT)
    try:
        yield
    except BaseException:
        if conn.is_in_transaction() and not conn.is_closed():
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
        raise
    await conn.execute(COMMIT_NOTIFY)
