"""Purge a service's append-only tables past their age (common.retention; docs/operations.md).

Usage: python scripts/retention.py SERVICE [--days N]
Connects as the service does (MARKETPAY_DATABASE_URL, MARKETPAY_DB_SCHEMA, default: the
service's name) and applies the rules of `<service>.retention`. Run it daily (a Kubernetes
CronJob, cron); runs at once are safe.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
from datetime import UTC, datetime, timedelta

import asyncpg

from common.retention import DEFAULT_AGE, RetentionError, purge


async def run(service: str, keep: timedelta) -> int:
    try:
        rules = importlib.import_module(f"{service}.retention").rules(keep)
    except RetentionError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2
    schema = os.environ.get("MARKETPAY_DB_SCHEMA", service)
    conn = await asyncpg.connect(
        os.environ["MARKETPAY_DATABASE_URL"], server_settings={"search_path": schema}
    )
    try:
        for purged in await purge(conn, rules, now=datetime.now(UTC)):
            print(f"{service}.{purged.table}: {purged.rows} rows purged")
    finally:
        await conn.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("service")
    parser.add_argument("--days", type=int, default=DEFAULT_AGE.days)
    args = parser.parse_args(argv)
    return asyncio.run(run(args.service, timedelta(days=args.days)))


if __name__ == "__main__":
    sys.exit(main())
