"""The statements that load or write a consumer batch take arrays; PostgreSQL keeps one
generic plan for each instead of planning every call, which cost more than executing them."""

from checkout import bank_transfer_repo, repo
from checkout.domain import CaptureLine
from common.runtime import DB_POOL


async def test_the_batch_statements_are_planned_once_and_reused(checkout):
    pool = checkout.app[DB_POOL]
    async with pool.acquire() as conn, conn.transaction():
        # given each statement run with batches of several sizes
        for size in (1, 3, 2, 7, 1, 4, 2, 5):
            keys = [("ten_x", f"pay_{n}") for n in range(size)]
            await repo.lock_payments_with_lines(conn, keys)
            await bank_transfer_repo.payments_of_lines(
                conn, [("ten_x", f"ord_{n}", "lo_1") for n in range(size)]
            )
            await repo.save_payment_changes(conn, changes_of(size))
        # then, past PostgreSQL's five custom plans, each runs its generic plan
        plans = await conn.fetch(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE 'SELECT k.n, f.id FROM unnest%'"
            " OR statement LIKE '%FROM payments p JOIN payment_lines l%FOR NO KEY UPDATE OF p, l'"
            " OR rtrim(statement, E' \\n') LIKE '%WITH lines AS (%UPDATE payment_lines l%SELECT 1'"
        )
    assert [(p["generic_plans"], p["custom_plans"]) for p in plans] == [(3, 5)] * 3


def changes_of(size: int) -> repo.PaymentChanges:
    """`size` line captures and status moves, of payments that don't exist (the statement
    updates nothing)."""
    changes = repo.PaymentChanges()
    for n in range(size):
        changes.line(
            CaptureLine(
                payment_id=f"pay_{n}",
                logistic_order_id="lo_1",
                supplier_id="sup_1",
                amount=100,
                status="CAPTURED",
                capture_id="cap_1",
                capture_revision=3,
            )
        )
        changes.statuses[f"pay_{n}"] = "PAID"
        changes.moves[f"pay_{n}"] = 1
    return changes
