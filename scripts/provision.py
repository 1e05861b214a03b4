"""Create the local database and, per service, its role and schema (DESIGN §1).

Usage: python scripts/provision.py [service ...]   (default: every service of the Procfile)
The administrator DSN comes from MARKETPAY_ADMIN_DSN (default: the local trust-auth server).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import asyncpg
from yarl import URL

from common.db.pool import provision_service

ROOT = Path(__file__).resolve().parent.parent
ADMIN_DSN = os.environ.get("MARKETPAY_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASE = os.environ.get("MARKETPAY_DATABASE", "marketpay")


def procfile_services() -> list[str]:
    names = []
    for line in (ROOT / "Procfile").read_text().splitlines():
        match = re.match(r"^([a-z_]+):", line)
        name = match.group(1) if match else None
        if name and (ROOT / "services" / name / name / "migrations").is_dir():
            names.append(name)  # services with a database; the PSP sandbox keeps none
    return names


async def main(services: list[str]) -> None:
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await admin.execute(f'CREATE DATABASE "{DATABASE}"')
            print(f"created database {DATABASE}")
    finally:
        await admin.close()
    conn = await asyncpg.connect(str(URL(ADMIN_DSN).with_path("/" + DATABASE)))
    try:
        for service in services:
            await provision_service(
                conn, schema=service, role=f"marketpay_{service}", password=None
            )
            print(f"schema {service} owned by role marketpay_{service}")
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:] or procfile_services()))
