"""A broker or database restart is routine maintenance: the service recovers by itself, so it
logs the lost and recovered connections as warnings. ERROR stays for what needs a person."""

import asyncio
import json
import logging
import sys

import pytest

from common.broker import connect
from common.db import create_pool
from common.logging import configure_logging
from common.testing.fixtures import dsn_with
from common.testing.tcpproxy import TcpProxy
from common.testing.waiting import eventually

from .test_outbox import _eq, _true, produce, relay_for, running, sink


class CurrentStdout:
    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def json_logs(capsys):
    configure_logging("reconnect-test", "INFO")
    # pytest swaps sys.stdout between the setup and call phases: follow the current one
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_marketpay", False):
            handler.setStream(CurrentStdout())  # type: ignore[attr-defined]

    def read() -> list[dict]:
        out = capsys.readouterr().out
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    yield read
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_marketpay", False)]:
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)


@pytest.mark.slow
async def test_broker_and_database_outages_log_warnings_not_errors(
    service_pool, service_db, servers, broker_names, json_logs
):
    # given a relay and a consumer that reach RabbitMQ and PostgreSQL through proxies
    amqp_proxy = await TcpProxy("127.0.0.1", 5672).start()
    pg_port = int(service_db.dsn.rsplit(":", 1)[1].split("/")[0])
    pg_proxy = await TcpProxy("127.0.0.1", pg_port).start()
    url = servers.amqp_url.replace("127.0.0.1:5672", f"127.0.0.1:{amqp_proxy.port}")
    connection = await connect(url)
    relay_pool = await create_pool(
        dsn_with(service_db.dsn, port=pg_proxy.port), service_db.schema, max_size=2
    )
    relay = relay_for(relay_pool, connection, broker_names, service_db.schema)
    try:
        async with sink(service_pool, connection, broker_names) as seen, running(relay):
            producer = asyncio.create_task(produce(service_pool, 2, 60, pause=0.03))
            await eventually(lambda: _true(len(seen.arrivals) >= 10))
            json_logs()  # what came before the outages
            # when the broker link is cut and restored, then the relay's database link
            await amqp_proxy.sever()
            await asyncio.sleep(1.5)
            amqp_proxy.restore()
            await pg_proxy.sever()
            await eventually(lambda: _true(not relay.is_leader))
            await asyncio.sleep(1.0)
            pg_proxy.restore()
            await producer
            await eventually(lambda: _eq(seen.received(), 120), within=40)
            await eventually(lambda: _true(relay.is_leader))
        lines = json_logs()
    finally:
        await relay_pool.close()
        await connection.close()
        await amqp_proxy.close()
        await pg_proxy.close()
    # then the outages were logged, as warnings, and nothing as an error
    warnings = [line for line in lines if line["level"] == "warning"]
    errors = [line for line in lines if line["level"] in ("error", "critical")]
    assert warnings, f"the outages went unlogged: {lines[:5]}"
    assert errors == []
