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

from bench.history import formats
from bench.profile import STATS_FILE_ENV, Profile, Snapshot, install_statement_log, read_statements
from common.testing.fixtures import ServiceDb


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
