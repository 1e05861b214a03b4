"""`BENCH_HISTORY=N`: N earlier payments in the services' tables before the measured phases, so
that a cost that grows with history shows up.

The rows are those today's code wrote for one payment of the warm-up, taken as a template: in
every table of checkout, capture and webhooks, the rows of that payment (its payment, lines
and timeline; its payment replica, lines, capture, capture history and attempts, logistic order
event; its PSP notifications; and as many inbox rows per service as a payment of the warm-up
left there on average, the latest ones). The outbox holds no history (the relay deletes what it
published), so it gets none. Each template row is written N times with COPY, with its
ids (payment, order, capture, notification, message UUIDs, PSP references, token hashes) made
unique per copy: the last 12 characters of each id become the copy's number in hex. The tenant,
supplier and merchant account stay the same: the history is the benchmark tenant's own, so
per-tenant indexes see it. Timestamps are the template's, and serial columns (`seq`) are left
to their sequences. Then ANALYZE, as autovacuum would after a bulk load.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from common.testing.fixtures import ServiceDb

HISTORY = int(os.environ.get("BENCH_HISTORY", "0"))
CHUNK = 5_000  # template copies per COPY data message

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_IDS = re.compile(rf"\b(?:{_UUID}|[a-z]+_[0-9a-f]{{16,}}|[0-9a-f]{{32,}})\b")
_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class Table:
    service: str
    name: str
    where: str  # a predicate on the template payment: {payment}, {captures}, {messages}
    wave: int = 1  # 2: its rows reference rows of wave 1


TABLES = [
    Table("checkout", "payments", "id = {payment}"),
    Table("checkout", "payment_lines", "payment_id = {payment}", 2),
    Table("checkout", "payment_timeline", "payment_id = {payment}", 2),
    Table("capture", "payments", "payment_id = {payment}"),
    Table("capture", "payment_lines", "payment_id = {payment}", 2),
    Table("capture", "captures", "payment_id = {payment}"),
    Table("capture", "capture_history", "capture_id = ANY({captures})", 2),
    Table("capture", "capture_attempts", "capture_id = ANY({captures})", 2),
    Table("capture", "logistic_order_events", "payment_id = {payment}"),
    Table(
        "webhooks",
        "notifications",
        "merchant_reference = {payment} OR psp_reference = ANY({references})"
        " OR original_reference = ANY({references})",
    ),
    *(
        Table(s, "inbox", "message_id::text = ANY({messages})")
        for s in ("checkout", "capture", "webhooks")
    ),
]


def literal(value: str) -> str:
    if not _SAFE.match(value):
        raise ValueError(f"not an id: {value!r}")
    return f"'{value}'"


def array(values: list[str]) -> str:
    return "ARRAY[" + ",".join(literal(v) for v in values) + "]::text[]"


async def connect(db: ServiceDb) -> asyncpg.Connection:
    return await asyncpg.connect(db.dsn, server_settings={"search_path": db.schema})


async def columns(conn: asyncpg.Connection, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = $1"
        " AND coalesce(column_default, '') NOT LIKE 'nextval(%' ORDER BY ordinal_position",
        table,
    )
    return [r["column_name"] for r in rows]


async def template(
    dbs: dict[str, ServiceDb], payment_id: str
) -> tuple[dict[int, tuple[list[str], list[str]]], list[str]]:
    """For each table of TABLES (by index): its columns and the template rows (COPY text);
    and the PSP references of the payment and its captures (ids that are not hex)."""
    conns = {name: await connect(db) for name, db in dbs.items()}
    try:
        capture = conns["capture"]
        found = await capture.fetch(
            "SELECT id, psp_reference, payment_psp_reference FROM captures WHERE payment_id = $1",
            payment_id,
        )
        captures = [r["id"] for r in found]
        references = sorted(
            {r[k] for r in found for k in ("psp_reference", "payment_psp_reference") if r[k]}
        )
        paid = await conns["checkout"].fetchval(
            "SELECT count(*) FROM payments WHERE status = 'PAID'"
        )
        messages: list[str] = []
        for conn in conns.values():
            share = round(await conn.fetchval("SELECT count(*) FROM inbox") / max(paid, 1))
            messages += [
                str(r["message_id"])
                for r in await conn.fetch(
                    "SELECT message_id FROM inbox ORDER BY processed_at DESC LIMIT $1", share
                )
            ]
        values = {
            "payment": literal(payment_id),
            "captures": array(captures),
            "references": array(references),
            "messages": array(messages),
        }
        out: dict[int, tuple[list[str], list[str]]] = {}
        for n, table in enumerate(TABLES):
            conn = conns[table.service]
            cols = await columns(conn, table.name)
            chunks: list[bytes] = []

            async def keep(data: bytes, into: list[bytes] = chunks) -> None:
                into.append(data)

            query = f"SELECT {', '.join(cols)} FROM {table.name} WHERE {table.where}"
            await conn.copy_from_query(query.format(**values), output=keep)
            out[n] = (cols, b"".join(chunks).decode().splitlines())
        return out, references
    finally:
        for conn in conns.values():
            await conn.close()


def formats(lines: list[str], extra_ids: list[str]) -> list[str]:
    """Each template line as a format string of the copy number `{0}`."""
    found = set(extra_ids)
    for line in lines:
        found.update(_IDS.findall(line))
    ids = sorted((i for i in found if len(i) > 12), key=len, reverse=True)
    out = []
    for line in lines:
        text = line.replace("{", "{{").replace("}", "}}")
        for token in ids:
            text = text.replace(token, token[:-12] + "{0:012x}")
        out.append(text + "\n")
    return out


async def copy_table(
    db: ServiceDb, table: str, cols: list[str], lines: list[str], n: int, extra_ids: list[str]
) -> int:
    fmt = formats(lines, extra_ids)
    if not fmt:
        return 0

    async def source() -> AsyncIterator[bytes]:
        for start in range(1, n + 1, CHUNK):
            yield "".join(
                f.format(i) for i in range(start, min(start + CHUNK, n + 1)) for f in fmt
            ).encode()
            await asyncio.sleep(0)

    conn = await connect(db)
    try:
        await conn.copy_to_table(table, source=source(), columns=cols, format="text")
        await conn.execute(f"ANALYZE {table}")
    finally:
        await conn.close()
    return len(fmt) * n


async def preload_history(dbs: dict[str, ServiceDb], payment_id: str, n: int) -> None:
    """Write `n` copies of the rows of `payment_id` (a PAID payment of the warm-up)."""
    if n <= 0:
        return
    started = time.perf_counter()
    rows, references = await template(dbs, payment_id)
    counts: dict[int, int] = {}
    for wave in (1, 2):  # referenced rows first
        batch = [k for k in rows if TABLES[k].wave == wave]
        written = await asyncio.gather(
            *(
                copy_table(dbs[TABLES[k].service], TABLES[k].name, *rows[k], n, references)
                for k in batch
            )
        )
        counts.update(zip(batch, written, strict=True))
    shown = ", ".join(
        f"{TABLES[k].service}.{TABLES[k].name} {count:,}" for k, count in counts.items() if count
    )
    print(
        f"  history: {n:,} earlier payments, {sum(counts.values()):,} rows written with COPY"
        f" and analysed in {time.perf_counter() - started:.0f} s ({shown})",
        flush=True,
    )
