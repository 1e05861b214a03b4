"""Where the test PostgreSQL and RabbitMQ are.

`MARKETPAY_TEST_PG_DSN` (an administrator's DSN) and `MARKETPAY_TEST_AMQP_URL` win; without
them, testcontainers starts both where a Docker engine answers; otherwise the local servers on
127.0.0.1 with their default credentials are used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

LOCAL_PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


@dataclass(frozen=True)
class Servers:
    pg_admin_dsn: str
    amqp_url: str


def docker_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run(  # noqa: S603
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and bool(result.stdout.strip())


@contextmanager
def test_servers() -> Iterator[Servers]:
    pg = os.environ.get("MARKETPAY_TEST_PG_DSN")
    amqp = os.environ.get("MARKETPAY_TEST_AMQP_URL")
    if pg is None and amqp is None and docker_answers():
        from testcontainers.postgres import PostgresContainer
        from testcontainers.rabbitmq import RabbitMqContainer

        with (
            PostgresContainer("postgres:16-alpine", driver=None) as pg_c,
            RabbitMqContainer("rabbitmq:3.13-alpine") as mq_c,
        ):
            params = mq_c.get_connection_params()
            yield Servers(
                pg_admin_dsn=pg_c.get_connection_url(),
                amqp_url=f"amqp://{mq_c.username}:{mq_c.password}@{params.host}:{params.port}/",
            )
        return
    yield Servers(pg_admin_dsn=pg or LOCAL_PG_DSN, amqp_url=amqp or LOCAL_AMQP_URL)
