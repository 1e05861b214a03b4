"""`python -m exports` serves; `python -m exports rebuild` rebuilds the read models from the
event journal (docs/exports.md, "Rebuilding the read models")."""

from __future__ import annotations

import asyncio
import sys

from common.db.pool import create_pool
from common.logging import configure_logging, get_logger
from common.runtime import serve
from exports import service
from exports.app import create_app
from exports.settings import Settings


async def rebuild(settings: Settings) -> int:
    pool = await create_pool(settings.database_url.get_secret_value(), settings.db_schema)
    try:
        async with pool.acquire() as conn, conn.transaction():
            applied: int = await service.rebuild_read_models(conn)
            return applied
    finally:
        await pool.close()


def main() -> None:
    settings = Settings()
    configure_logging(settings.service_name, settings.log_level)
    if sys.argv[1:] == ["rebuild"]:
        applied = asyncio.run(rebuild(settings))
        get_logger("exports").info("read models rebuilt", events_applied=applied)
        print(f"read models rebuilt from {applied} journalled events")
        return
    if sys.argv[1:]:
        sys.exit("usage: python -m exports [rebuild]")
    serve(create_app(settings), settings)


if __name__ == "__main__":
    main()
