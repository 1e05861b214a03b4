"""The standing profile of a benchmark run: per event, the SQL statements and transactions the
services sent, the commits and rows of the benchmark's own database, WAL flushes, broker
messages, and the statements that took the most time.

Statements are counted twice. On the server, by `pg_stat_statements`, when it is loaded
(`make bench` loads it into a local cluster: `scripts/pg-stat-statements.sh`; it tracks only
the benchmark's scratch database, `enable_server_statements`): the time PostgreSQL spent
executing each statement, per role, so per service. And where they are sent: each service child
(`bench.processes.serve_service`) registers an asyncpg query logger
(`Connection.add_query_logger`, a public asyncpg API) on every connection it opens. The logger
sees every `execute`, `fetch*` and `executemany` call, i.e. every round trip but the statement
preparations asyncpg caches; `BEGIN`/`COMMIT` of `conn.transaction()` are such calls too. The
time it records is the wall time the service waited for the answer (the server's work, its lock
waits and the network), so "top statements by time waited for" is what the services waited
for, and the server's own list says what of it was execution. The child writes its counters
to a file when sent SIGUSR1.

Beside it, from the server: `pg_stat_database` of the benchmark's database (`xact_commit`
counts explicit transactions and single-statement ones alike; rows inserted, updated and
deleted), and `pg_stat_wal.wal_sync` of the whole server (other databases' flushes included).
Broker messages come from the services' Prometheus counters (`outbox_published_total`,
`consumer_messages_total`), plus the events the load publishes itself.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from asyncpg.connection import Connection, LoggedQuery
from prometheus_client.parser import text_string_to_metric_families

from common.testing.fixtures import dsn_with

STATS_FILE_ENV = "BENCH_STATEMENTS_FILE"
ServerStatements = dict[tuple[str, str], tuple[int, float, float]]
"""pg_stat_statements of one database: (role, normalised query) → (calls, execution ms,
planning ms)."""
TOP = int(os.environ.get("BENCH_PROFILE_TOP", "10"))


# -- in a service child --------------------------------------------------------------------


_LITERAL = re.compile(r"'[^']*'")


@dataclass
class StatementLog:
    """Calls and seconds per statement text, of every connection of this process."""

    calls: dict[str, list[float]] = field(default_factory=dict)
    dumps: int = 0

    def record(self, logged: LoggedQuery) -> None:
        # statements sent with literal values (the inbox row with its BEGIN) count as one text
        query = _LITERAL.sub("'…'", logged.query) if "'" in logged.query else logged.query
        entry = self.calls.get(query)
        if entry is None:
            entry = self.calls[query] = [0, 0.0]
        entry[0] += 1
        entry[1] += logged.elapsed

    def dump(self, target: Path) -> None:
        self.dumps += 1
        partial = target.with_suffix(".partial")
        partial.write_text(json.dumps({"dump": self.dumps, "calls": self.calls}))
        partial.rename(target)


def install_statement_log() -> None:
    """Log every statement of every asyncpg connection opened from now on in this process, and
    write the counters to $BENCH_STATEMENTS_FILE on SIGUSR1 (call it inside the event loop)."""
    target = os.environ.get(STATS_FILE_ENV)
    if not target:
        return
    log = StatementLog()
    original = Connection.__init__

    def init(self: Connection, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.add_query_logger(log.record)

    Connection.__init__ = init  # type: ignore[method-assign,assignment]
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, log.dump, Path(target))


# -- in the load process -------------------------------------------------------------------

Statements = dict[str, tuple[int, float]]  # statement text → (calls, seconds)


async def read_statements(pid: int, target: Path, within: float = 10.0) -> Statements:
    """Ask a child for its statement counters (SIGUSR1) and read them."""
    before = _dump(target)
    os.kill(pid, signal.SIGUSR1)
    deadline = asyncio.get_running_loop().time() + within
    while True:
        data = _dump(target)
        if data["dump"] > before["dump"]:
            return {q: (int(c), float(s)) for q, (c, s) in data["calls"].items()}
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("no statement counters from the child")
        await asyncio.sleep(0.02)


def _dump(target: Path) -> dict[str, Any]:
    if not target.exists():
        return {"dump": 0, "calls": {}}
    data: dict[str, Any] = json.loads(target.read_text())
    return data


async def broker_counters(http: aiohttp.ClientSession, url: str) -> tuple[float, float]:
    """(published by the outbox relay, handled by inbox consumers) so far, from /metrics."""
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    published = delivered = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "outbox_published_total":
                published += sample.value
            elif sample.name == "consumer_messages_total":
                delivered += sample.value
    return published, delivered


DATABASE_COUNTERS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted")


async def database_counters(dsn: str) -> dict[str, int]:
    """The benchmark database's own counters, and the whole server's WAL flushes."""
    await asyncio.sleep(1.1)  # backends report their statistics at most once a second
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            f"SELECT {', '.join(DATABASE_COUNTERS)}, (SELECT wal_sync FROM pg_stat_wal)"
            " AS wal_sync FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await conn.close()
    assert row is not None
    return {key: int(value) for key, value in row.items()}


async def enable_server_statements(admin_dsn: str, database: str) -> bool:
    """Have `pg_stat_statements` track `database` (and only it: the server-wide setting stays
    `none`), if the server has loaded it; whether it does."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        libraries = str(await admin.fetchval("SHOW shared_preload_libraries"))
        if "pg_stat_statements" not in libraries.replace(" ", "").split(","):
            return False
        for setting, value in (("track", "top"), ("track_planning", "on")):
            await admin.execute(
                f"ALTER DATABASE \"{database}\" SET pg_stat_statements.{setting} = '{value}'"
            )
    finally:
        await admin.close()
    conn = await asyncpg.connect(dsn_with(admin_dsn, database=database))
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    finally:
        await conn.close()
    return True


async def server_statements(database_admin_dsn: str) -> ServerStatements:
    """What `pg_stat_statements` counted in the database the DSN names; empty without it."""
    conn = await asyncpg.connect(database_admin_dsn)
    try:
        if await conn.fetchval("SELECT to_regclass('pg_stat_statements')") is None:
            return {}
        rows = await conn.fetch(
            "SELECT r.rolname AS role, s.query, sum(s.calls)::bigint AS calls,"
            " sum(s.total_exec_time) AS ms, sum(s.total_plan_time) AS plan_ms"
            " FROM pg_stat_statements s"
            " JOIN pg_roles r ON r.oid = s.userid"
            " WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " GROUP BY 1, 2"
        )
    finally:
        await conn.close()
    return {
        (row["role"], row["query"]): (int(row["calls"]), float(row["ms"]), float(row["plan_ms"]))
        for row in rows
    }


@dataclass
class Snapshot:
    statements: dict[str, Statements]  # service → its statements
    broker: dict[str, tuple[float, float]]  # service → (published, delivered)
    database: dict[str, int]
    server: ServerStatements = field(default_factory=dict)


@dataclass
class Profile:
    """What one phase cost per event: the difference of two snapshots over `events`."""

    events: int
    load_published: int  # messages the load published itself (one per event)
    before: Snapshot
    after: Snapshot
    load_commits: int = 0  # the load's own statements in the benchmark database, if counted

    def statements(self) -> dict[str, Statements]:
        out: dict[str, Statements] = {}
        for service, now in self.after.statements.items():
            then = self.before.statements.get(service, {})
            diff = {}
            for query, (calls, seconds) in now.items():
                c0, s0 = then.get(query, (0, 0.0))
                if calls > c0:
                    diff[query] = (calls - c0, seconds - s0)
            out[service] = diff
        return out

    def database(self, key: str) -> float:
        own = self.load_commits if key == "xact_commit" else 0
        return (self.after.database[key] - self.before.database[key] - own) / self.events

    def show(self) -> None:
        n = self.events
        per_service = self.statements()
        calls = {s: sum(c for c, _ in st.values()) / n for s, st in per_service.items()}
        commits = {
            s: sum(c for q, (c, _) in st.items() if q.strip().upper().startswith("COMMIT")) / n
            for s, st in per_service.items()
        }
        published = sum(
            self.after.broker[s][0] - self.before.broker[s][0] for s in self.after.broker
        )
        delivered = sum(
            self.after.broker[s][1] - self.before.broker[s][1] for s in self.after.broker
        )
        written = sum(self.database(k) for k in ("tup_inserted", "tup_updated", "tup_deleted"))

        def by_service(values: dict[str, float]) -> str:
            return ", ".join(f"{s} {v:.1f}" for s, v in values.items())

        print(f"    profile per SHIPPED ({n} events):", flush=True)
        print(
            f"      SQL statements sent {sum(calls.values()):.1f} ({by_service(calls)});"
            f" transactions (COMMITs sent) {sum(commits.values()):.1f} ({by_service(commits)})",
            flush=True,
        )
        print(
            f"      benchmark database: commits {self.database('xact_commit'):.1f} (explicit"
            f" and single-statement), rollbacks {self.database('xact_rollback'):.1f},"
            f" rows written {written:.1f}; WAL flushes {self.database('wal_sync'):.1f}"
            " (whole server)",
            flush=True,
        )
        print(
            f"      broker messages: published {(published + self.load_published) / n:.1f}"
            f" (outbox relays {published / n:.1f}, the load's own SHIPPED"
            f" {self.load_published / n:.1f}), handled by consumers {delivered / n:.1f}",
            flush=True,
        )
        verbs: dict[str, float] = {}
        for st in per_service.values():
            for query, (c, _) in st.items():
                verb = (query.split(maxsplit=1) or ["?"])[0].strip(";(").upper()
                verbs[verb] = verbs.get(verb, 0.0) + c / n
        shown = ", ".join(f"{v} {c:.1f}" for v, c in sorted(verbs.items(), key=lambda x: -x[1]))
        print(f"      statements by first word: {shown}", flush=True)
        everything = [
            (seconds, calls_, service, query)
            for service, st in per_service.items()
            for query, (calls_, seconds) in st.items()
        ]
        total = sum(s for s, *_ in everything) or 1.0
        print("      top statements by time waited for (service, calls/SHIPPED, mean):")
        for seconds, calls_, service, query in sorted(everything, reverse=True)[:TOP]:
            text = " ".join(query.split())
            print(
                f"        {seconds / total:4.0%} {service:<8} {calls_ / n:5.2f}"
                f" {seconds / calls_ * 1000:6.2f} ms  {text[:110]}",
                flush=True,
            )
        self._show_server(list(per_service))

    def server(self) -> ServerStatements:
        """What `pg_stat_statements` counted during the phase."""
        out: ServerStatements = {}
        for key, (calls, ms, plan) in self.after.server.items():
            c0, ms0, plan0 = self.before.server.get(key, (0, 0.0, 0.0))
            if calls > c0:
                out[key] = (calls - c0, ms - ms0, plan - plan0)
        return out

    def _show_server(self, services: list[str]) -> None:
        counted = self.server()
        if not counted:
            print("      (no pg_stat_statements: scripts/pg-stat-statements.sh loads it)")
            return
        n = self.events

        def service_of(role: str) -> str:
            return next((s for s in services if f"_{s}_" in role), role)

        by_query: dict[tuple[str, str], tuple[int, float, float]] = {}
        for (role, query), (calls, ms, plan) in counted.items():
            key = (service_of(role), " ".join(query.split()))
            c0, ms0, plan0 = by_query.get(key, (0, 0.0, 0.0))
            by_query[key] = (c0 + calls, ms0 + ms, plan0 + plan)
        executed = sum(calls for calls, _, _ in by_query.values())
        exec_ms = sum(ms for _, ms, _ in by_query.values())
        plan_ms = sum(plan for _, _, plan in by_query.values())
        total_ms = (exec_ms + plan_ms) or 1.0
        print(
            f"      PostgreSQL's own count (pg_stat_statements): {executed / n:.1f} statements"
            f" executing {exec_ms / n:.2f} ms and planning {plan_ms / n:.2f} ms per SHIPPED;"
            " top by execution and planning time (service, calls/SHIPPED, mean, of which"
            " planning):",
            flush=True,
        )
        ranked = sorted(by_query.items(), key=lambda item: -(item[1][1] + item[1][2]))
        for (service, query), (calls, ms, plan) in ranked[:TOP]:
            print(
                f"        {(ms + plan) / total_ms:4.0%} {service:<8} {calls / n:5.2f}"
                f" {(ms + plan) / calls:6.3f} ms {plan / calls:6.3f} ms  {query[:100]}",
                flush=True,
            )
