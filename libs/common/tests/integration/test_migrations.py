"""Migrations: each file applied exactly once even when several processes start together;
a changed or badly named file stops the start-up."""

import asyncio
import json
import sys
from pathlib import Path

import asyncpg
import pytest

from common.db import MigrationError, apply_migrations

# Fails if applied twice: CREATE TABLE without IF NOT EXISTS, and it counts its runs.
FIRST = """
CREATE TABLE runs (n integer NOT NULL);
SELECT pg_sleep(0.5);
INSERT INTO runs VALUES (1);
CREATE TABLE thing (id integer PRIMARY KEY);
"""
SECOND = "ALTER TABLE thing ADD COLUMN label text NOT NULL DEFAULT '';"

MIGRATE = """
import asyncio, json, sys
import asyncpg
from pathlib import Path
from common.db import apply_migrations

async def main(dsn, schema, directory):
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        print(json.dumps(await apply_migrations(conn, schema, {"svc": Path(directory)})))
    finally:
        await conn.close()

asyncio.run(main(*sys.argv[1:]))
"""


def migrations_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    directory = tmp_path / "migrations"
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


async def connect(service_db) -> asyncpg.Connection:
    return await asyncpg.connect(service_db.dsn, server_settings={"search_path": service_db.schema})


async def test_processes_migrating_at_once_apply_each_file_once(service_db, tmp_path):
    # given
    directory = migrations_dir(tmp_path, {"001_first.sql": FIRST, "002_second.sql": SECOND})

    # when three processes start together
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            MIGRATE,
            service_db.dsn,
            service_db.schema,
            str(directory),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outputs = await asyncio.wait_for(
        asyncio.gather(*(p.communicate() for p in processes)), timeout=60
    )

    # then all succeed, one applied both files, and the others found nothing to do
    assert [p.returncode for p in processes] == [0, 0, 0], [err for _, err in outputs]
    applied = sorted(json.loads(out) for out, _ in outputs)
    assert applied == [[], [], ["svc/001_first", "svc/002_second"]]
    conn = await connect(service_db)
    try:
        rows = await conn.fetch("SELECT component, version, name FROM schema_migrations")
        assert sorted(tuple(r) for r in rows) == [("svc", 1, "first"), ("svc", 2, "second")]
        assert await conn.fetchval("SELECT count(*) FROM runs") == 1
    finally:
        await conn.close()


async def test_a_file_changed_after_it_was_applied_stops_the_start(service_db, tmp_path):
    # given
    directory = migrations_dir(tmp_path, {"001_first.sql": "CREATE TABLE a (id int);"})
    conn = await connect(service_db)
    try:
        assert await apply_migrations(conn, service_db.schema, {"svc": directory}) == [
            "svc/001_first"
        ]
        (directory / "001_first.sql").write_text("CREATE TABLE a (id bigint);")

        # when / then
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply_migrations(conn, service_db.schema, {"svc": directory})
    finally:
        await conn.close()


@pytest.mark.parametrize("name", ["1_first.sql", "001-first.sql", "001_First.sql", "first.sql"])
async def test_a_badly_named_file_stops_the_start(service_db, tmp_path, name):
    # given
    directory = migrations_dir(tmp_path, {name: "CREATE TABLE a (id int);"})
    conn = await connect(service_db)
    try:
        # when / then
        with pytest.raises(MigrationError, match=r"NNN_description\.sql"):
            await apply_migrations(conn, service_db.schema, {"svc": directory})
        assert await conn.fetchval("SELECT to_regclass('a')") is None
    finally:
        await conn.close()


async def test_files_apply_in_numeric_order(service_db, tmp_path):
    # given: 1000 depends on 999, though "1000_..." sorts before "999_..." as a name
    directory = migrations_dir(
        tmp_path,
        {
            "999_create.sql": "CREATE TABLE a (id int);",
            "1000_alter.sql": "ALTER TABLE a ADD COLUMN b int;",
        },
    )
    conn = await connect(service_db)
    try:
        # when
        applied = await apply_migrations(conn, service_db.schema, {"svc": directory})

        # then
        assert applied == ["svc/999_create", "svc/1000_alter"]
    finally:
        await conn.close()
