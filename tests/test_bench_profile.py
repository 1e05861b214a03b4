"""The capture benchmark's instruments, without a load run: the statement counter a service
child installs, and the id rewriting of the history preload."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from pathlib import Path

import asyncpg
import pytest
from yarl import URL

from bench.history import formats
from bench.processes import scratch_services
from bench.profile import (
    STATS_FILE_ENV,
    Profile,
    Snapshot,
    install_statement_log,
    read_statements,
    server_statements,
)
from common.testing.fixtures import ServiceDb, dsn_with
from common.testing.servers import Servers


async def test_the_statement_log_counts_every_round_trip_of_every_new_connection(
    service_db: ServiceDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "statements.json"
    monkeypatch.setenv(STATS_FILE_ENV, str(target))
    # the log patches asyncpg's Connection for the process: put it back afterwards
    monkeypatch.setattr(asyncpg.connection.Connection, "__init__", asyncpg.Connection.__init__)
    install_statement_log()
    conn = await asyncpg.connect(service_db.dsn)
    try:
        async with conn.transaction():
            for n in range(3):
                assert await conn.fetchval("SELECT $1::int + 1", n) == n + 1
        await conn.execute("SELECT 1")
    finally:
        await conn.close()
    try:
        counted = await read_statements(os.getpid(), target)
        again = await read_statements(os.getpid(), target)  # a second dump: a new snapshot
    finally:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
    assert counted["SELECT $1::int + 1"][0] == 3
    assert counted["SELECT 1"][0] == 1
    assert counted["BEGIN;"][0] == 1
    assert counted["COMMIT;"][0] == 1
    assert all(seconds > 0 for _, seconds in counted.values())
    assert again == counted
    assert json.loads(target.read_text())["dump"] == 2


def test_a_profile_is_the_difference_of_two_snapshots_per_event() -> None:
    database = {"xact_commit": 10, "xact_rollback": 0, "wal_sync": 5}
    before = Snapshot({"capture": {"SELECT 1": (4, 0.4)}}, {"capture": (1.0, 2.0)}, database)
    after = Snapshot(
        {"capture": {"SELECT 1": (8, 0.6), "COMMIT;": (2, 0.1)}},
        {"capture": (5.0, 6.0)},
        {"xact_commit": 30, "xact_rollback": 0, "wal_sync": 9},
    )
    profile = Profile(2, 2, before, after, load_commits=4)
    assert profile.statements() == {
        "capture": {"SELECT 1": (4, pytest.approx(0.2)), "COMMIT;": (2, 0.1)}
    }
    assert profile.database("xact_commit") == 8.0  # (30 - 10 - the load's 4) / 2
    assert profile.database("wal_sync") == 2.0


def test_the_servers_count_is_per_event_and_per_service(capsys: pytest.CaptureFixture[str]) -> None:
    database = {"xact_commit": 0, "xact_rollback": 0, "wal_sync": 0, "tup_inserted": 0}
    database |= {"tup_updated": 0, "tup_deleted": 0}
    role = "mp_1a2b3c4d_capture_5e6f70"
    before = Snapshot(
        {"capture": {}}, {"capture": (0.0, 0.0)}, database, {(role, "SELECT $1"): (3, 1.5, 0.0)}
    )
    after = Snapshot(
        {"capture": {}},
        {"capture": (0.0, 0.0)},
        database,
        {
            (role, "SELECT $1"): (7, 3.0, 0.5),
            ("mp_1a2b3c4d_checkout_90ab12", "COMMIT"): (2, 6.0, 0.0),
        },
    )
    profile = Profile(2, 2, before, after)
    assert profile.server() == {
        (role, "SELECT $1"): (4, 1.5, 0.5),
        ("mp_1a2b3c4d_checkout_90ab12", "COMMIT"): (2, 6.0, 0.0),
    }
    profile.show()
    shown = capsys.readouterr().out
    assert "3.0 statements executing 3.75 ms and planning 0.25 ms per SHIPPED" in shown
    assert re.search(r"75% mp_1a2b3c4d_checkout_90ab12\s+1.00\s+3.000 ms\s+0.000 ms  COMMIT", shown)
    assert re.search(r"25% capture\s+2.00\s+0.500 ms\s+0.125 ms  SELECT \$1", shown)


async def test_pg_stat_statements_counts_the_statements_of_the_scratch_database(
    servers: Servers,
) -> None:
    async with scratch_services(servers.pg_admin_dsn, "probe") as dbs:
        database = URL(dbs["probe"].dsn).path.lstrip("/")
        admin = dsn_with(servers.pg_admin_dsn, database=database)
        conn = await asyncpg.connect(dbs["probe"].dsn)
        try:
            for _ in range(3):
                await conn.fetchval("SELECT 41 + 1")
        finally:
            await conn.close()
        counted = await server_statements(admin)
        libraries = await asyncpg.connect(servers.pg_admin_dsn)
        try:
            loaded = "pg_stat_statements" in str(
                await libraries.fetchval("SHOW shared_preload_libraries")
            )
        finally:
            await libraries.close()
    if not loaded:  # the benchmark says so and shows the services' own count only
        assert counted == {}
        return
    calls = {q: c for (role, q), (c, _, _) in counted.items() if role == dbs["probe"].role}
    assert calls.get("SELECT $1 + $2") == 3


def test_each_copy_of_the_history_gets_ids_of_its_own_and_keeps_the_tenants() -> None:
    line = (
        "pay_0123456789abcdef01234567\tten_0123456789ab\tsup_0123456789ab\tQWERTYUIOPASDFGH"
        '\t{"id": "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab", "amount": 15000}'
    )
    (fmt,) = formats([line], ["QWERTYUIOPASDFGH"])
    first, second = fmt.format(1), fmt.format(2)
    assert first != second
    assert first.endswith("}\n")  # JSON braces kept
    assert '"amount": 15000' in first
    assert "ten_0123456789ab\tsup_0123456789ab" in first  # the benchmark's tenant and supplier
    fields = first.rstrip("\n").split("\t")
    assert fields[0] == "pay_0123456789ab000000000001"
    assert fields[3] == "QWER000000000001"
    uuid = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", first)
    assert uuid is not None
    assert uuid.group() == "6f1c2d3e-4a5b-4c6d-8e7f-000000000001"
