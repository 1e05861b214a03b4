"""Jobs over their life: a worker killed mid-export, expiry, the read models rebuilt from the
journal, redelivered and republished events, poison messages, S3-compatible storage."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import boto3
import pytest

from common.events import EventType, PaymentAuthorised
from common.testing.waiting import eventually
from exports.testing import at, dataset, parse_csv

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def service_env(exports: Any, **overrides: Any) -> dict[str, str]:
    """The MARKETPAY_* environment of a replica like the harness's, run as a process."""
    settings = exports.settings(**overrides)
    env = {
        "MARKETPAY_PROFILE": "test",
        "MARKETPAY_DATABASE_URL": settings.database_url.get_secret_value(),
        "MARKETPAY_DB_SCHEMA": settings.db_schema,
        "MARKETPAY_AMQP_URL": settings.amqp_url.get_secret_value(),
        "MARKETPAY_BROKER_NAMESPACE": settings.broker_namespace,
        "MARKETPAY_BROKER_QUEUE_EXPIRES_MS": str(settings.broker_queue_expires_ms),
        "MARKETPAY_STORAGE_DIR": settings.storage_dir,
        "MARKETPAY_LOG_LEVEL": "WARNING",
    }
    env.update({f"MARKETPAY_{k.upper()}": str(v) for k, v in overrides.items()})
    return {**os.environ, **env}


@contextlib.asynccontextmanager
async def service_process(env: dict[str, str]) -> AsyncIterator[tuple[Any, str]]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exports",
        env={**env, "MARKETPAY_HTTP_PORT": str(port)},
        stdout=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def ready() -> bool:
                assert process.returncode is None, "the exports process died"
                try:
                    async with http.get(f"{url}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientError:
                    return False

            await eventually(ready, within=30)
        yield process, url
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def fed_tenant(exports: Any, extra_lines: int = 0) -> Any:
    tenant = await exports.new_tenant()
    s1, s2 = tenant.suppliers
    events = dataset(s1, s2)
    for event_type, data, occurred_at in events:
        await exports.publish(event_type, data, tenant.id, occurred_at)
    if extra_lines:
        # one authorisation of many logistic orders: many rows from one event
        await exports.publish(
            EventType.PAYMENT_AUTHORISED,
            PaymentAuthorised(
                payment_id="pay_big",
                order_id="ord_big",
                status_from="AUTHORIZATION_PENDING",
                status="AUTHORIZED",
                amount={"value": 100 * extra_lines, "currency": "EUR"},
                psp_reference="PSP-BIG",
                payment_option="CREDIT_CARD",
                capture_mode="MANUAL",
                merchant_account="DemoECOM",
                lines=[
                    {"logistic_order_id": f"lo_big_{n:05d}", "supplier_id": s1, "amount": 100}
                    for n in range(extra_lines)
                ],
            ),
            tenant.id,
            at(5),
        )
    await exports.journalled(tenant, len(events) + (1 if extra_lines else 0))
    return tenant


@contextlib.asynccontextmanager
async def slow_export(exports: Any) -> AsyncIterator[tuple[Any, Any, str]]:
    """A replica run as a process, writing slowly, with a big tenant's transactions export
    under way (RUNNING, some rows written): (tenant, process, export id)."""
    tenant = await fed_tenant(exports, extra_lines=4000)
    env = service_env(exports, throttle_bytes_per_s=60_000, lease_s=2.0, heartbeat_s=0.3)
    async with service_process(env) as (process, url):
        status, body = await exports.call(
            "POST", "/v1/exports", tenant.operator_key, {"type": "transactions"}, url=url
        )
        assert status == 202, body
        export_id = body["data"]["id"]

        async def writing() -> bool:
            _, found = await exports.call("GET", f"/v1/exports/{export_id}", tenant.operator_key)
            data = found["data"]
            return bool(data["status"] == "RUNNING" and data["rows_written"] > 0)

        await eventually(writing, within=30)
        yield tenant, process, export_id


async def ready_events(exports: Any, export_id: str) -> int:
    """How many export.ready events the export's replicas enqueued for it."""
    async with exports.main.pool.acquire() as conn:
        published: int = await conn.fetchval(
            "SELECT count(*) FROM outbox_log WHERE routing_key = 'export.ready'"
            " AND envelope->'data'->>'export_id' = $1",
            export_id,
        )
    return published


@pytest.mark.parametrize("exports", [{"worker_poll_interval_s": 600}], indirect=True)
async def test_a_worker_killed_mid_export_is_replaced_and_the_job_completes_once(
    exports,
) -> None:
    # given: a replica run as a process, writing slowly (the in-process one stays idle)
    async with slow_export(exports) as (tenant, process, export_id):
        _, running = await exports.call("GET", f"/v1/exports/{export_id}", tenant.operator_key)
        assert running["data"]["rows_written"] < running["data"]["rows_total"] == 4009
        # when: the worker dies mid-export
        process.send_signal(signal.SIGKILL)
        await process.wait()
    # then: another replica takes the job over once the lease runs out, and completes it once
    await exports.start()
    ready = await exports.until_status(tenant.operator_key, export_id, within=60)
    assert ready["attempt"] == 2
    assert ready["rows_written"] == ready["rows_total"] == 4009
    status, raw, _ = await exports.download(tenant.operator_key, export_id)
    assert status == 200
    rows = parse_csv(raw)
    assert len(rows) == 4010
    assert [r[8] for r in rows if r[6] == "pay_big"] == [f"lo_big_{n:05d}" for n in range(4000)]
    assert await ready_events(exports, export_id) == 1
    files = sorted(p.name for p in (exports.storage_dir / tenant.id / export_id).iterdir())
    assert files == ["2.csv"]  # the dead attempt's partial file is gone


@pytest.mark.parametrize("exports", [{"retention_s": 1.5}], indirect=True)
async def test_an_expired_export_is_gone(exports) -> None:
    # given
    tenant = await fed_tenant(exports)
    export = await exports.request_export(tenant.operator_key, "funding_transfers")
    ready = await exports.until_status(tenant.operator_key, export["id"])
    status, _, _ = await exports.download(tenant.operator_key, export["id"])
    assert status == 200
    file = exports.storage_dir / tenant.id / export["id"] / "1.csv"
    assert file.is_file()
    # when
    expired = await exports.until_status(tenant.operator_key, export["id"], "EXPIRED")
    # then
    assert expired["expires_at"] == ready["expires_at"]
    assert expired["download_url"] is None
    status, body = await exports.call(
        "GET", f"/v1/exports/{export['id']}/download", tenant.operator_key
    )
    assert status == 410, body
    assert body["error"]["code"] == "export_expired"

    async def deleted() -> bool:
        return not file.exists()

    await eventually(deleted)
    async with exports.main.pool.acquire() as conn:
        ready_events = await conn.fetch(
            "SELECT envelope FROM outbox_log WHERE routing_key = 'export.ready'"
        )
    assert [e["envelope"]["data"]["export_id"] for e in ready_events] == [export["id"]]
    assert ready_events[0]["envelope"]["data"]["rows"] == 2


async def test_the_read_models_rebuilt_from_a_replay_give_the_same_files(exports) -> None:
    # given
    tenant = await fed_tenant(exports)
    s1, s2 = tenant.suppliers
    before = {
        kind: await exports.export_file(tenant.operator_key, kind)
        for kind in ("transactions", "supplier_payouts", "funding_transfers")
    }
    # when: every event delivered again (same ids), then republished by its producers (new
    # envelope ids), then the read models rebuilt from the journal
    originals = []
    for event_type, data, occurred_at in dataset(s1, s2):
        originals.append(await exports.publish(event_type, data, tenant.id, occurred_at))
    await exports.publish_envelopes(originals)  # the same messages once more
    await exports.journalled(tenant, 2 * len(originals))
    after_replay = {kind: await exports.export_file(tenant.operator_key, kind) for kind in before}
    rebuild = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exports",
        "rebuild",
        env=service_env(exports),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await rebuild.communicate()
    assert rebuild.returncode == 0
    assert (
        out.decode().strip() == f"read models rebuilt from {2 * len(originals)} journalled events"
    )
    after_rebuild = {kind: await exports.export_file(tenant.operator_key, kind) for kind in before}
    # then
    assert after_replay == before
    assert after_rebuild == before
    assert len(parse_csv(before["transactions"])) == 10


async def test_poison_messages_go_to_the_dead_letter_queue(exports) -> None:
    # given
    tenant = await fed_tenant(exports)
    # when: a capture.succeeded whose payload is not the catalogue's, then a valid event
    await exports.publish_raw(
        "capture.succeeded",
        b'{"id": "%s", "type": "capture.succeeded", "tenant_id": "%s",'
        b' "correlation_id": "x", "data": {"capture_id": "c", "amount": -5}}'
        % (str(uuid.uuid4()).encode(), tenant.id.encode()),
    )
    await exports.publish_raw("payout.settled", b"not json")
    # then
    found: list[tuple[bytes, dict[str, Any]]] = []

    async def parked() -> bool:
        found.extend(await exports.dead_letters("exports.feed"))
        return len(found) >= 2

    await eventually(parked, within=30)
    reasons = " ".join(str(headers) for _, headers in found)
    assert "capture.succeeded payload invalid" in reasons
    assert "not a Marketpay event envelope" in reasons
    assert await exports.export_rows(tenant.operator_key, "transactions") != []


@contextlib.asynccontextmanager
async def moto_server() -> AsyncIterator[str]:
    """moto's S3 stand-in in server mode, on 127.0.0.1."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        os.path.join(os.path.dirname(sys.executable), "moto_server"),
        "-H",
        "127.0.0.1",
        "-p",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:

            async def up() -> bool:
                try:
                    async with http.get(f"{url}/moto-api/") as response:
                        return response.status < 500
                except aiohttp.ClientError:
                    return False

            await eventually(up, within=30)
        yield url
    finally:
        process.terminate()
        await process.wait()


@pytest.mark.parametrize("exports", [{"worker_poll_interval_s": 600}], indirect=True)
async def test_files_in_s3_compatible_storage(exports) -> None:
    async with moto_server() as endpoint:
        # given: a replica on S3 storage (small parts, so the file is a real multipart upload)
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        await asyncio.to_thread(s3.create_bucket, Bucket="exports")
        tenant = await fed_tenant(exports, extra_lines=60_000)
        replica = await exports.start(
            storage="s3",
            s3_bucket="exports",
            s3_prefix="mp/",
            s3_endpoint_url=endpoint,
            s3_access_key_id="test",
            s3_secret_access_key="test",
            s3_part_size_bytes=5 * 1024 * 1024,
        )
        # when
        status, body = await exports.call(
            "POST", "/v1/exports", tenant.operator_key, {"type": "transactions"}, url=replica.url
        )
        assert status == 202
        export_id = body["data"]["id"]
        ready = await exports.until_status(tenant.operator_key, export_id, within=60)
        async with exports.http.get(
            f"{replica.url}/v1/exports/{export_id}/download",
            headers={"Authorization": f"Bearer {tenant.operator_key}"},
        ) as response:
            assert response.status == 200
            raw = await response.read()
        # then
        listed = await asyncio.to_thread(s3.list_objects_v2, Bucket="exports")
        assert [o["Key"] for o in listed["Contents"]] == [f"mp/{tenant.id}/{export_id}/1.csv"]
        head = await asyncio.to_thread(
            s3.head_object, Bucket="exports", Key=f"mp/{tenant.id}/{export_id}/1.csv"
        )
        assert head["ContentLength"] == len(raw) == ready["size_bytes"] > 5 * 1024 * 1024
        assert "-" in head["ETag"]  # a multipart upload's ETag
        rows = parse_csv(raw)
        assert len(rows) == 1 + 60_009
        assert rows[0][:3] == ["occurred_at", "transaction_type", "direction"]
        assert rows[1][:10] == [
            "2026-11-02T09:30:00Z", "AUTHORISATION", "NONE", "AUTHORISED", "10000", "EUR",
            "pay_1", "ord_1", "lo_1", tenant.suppliers[0],
        ]  # fmt: skip
        assert [r[8] for r in rows if r[6] == "pay_big"] == [
            f"lo_big_{n:05d}" for n in range(60_000)
        ]
        uploads = await asyncio.to_thread(s3.list_multipart_uploads, Bucket="exports")
        assert uploads.get("Uploads", []) == []


@pytest.mark.parametrize("exports", [{"worker_poll_interval_s": 600}], indirect=True)
async def test_a_stalled_worker_that_lost_its_lease_never_completes_the_job(exports) -> None:
    # given: a replica run as a process, writing slowly
    async with slow_export(exports) as (tenant, process, export_id):

        async def job() -> dict[str, Any]:
            _, found = await exports.call("GET", f"/v1/exports/{export_id}", tenant.operator_key)
            data: dict[str, Any] = found["data"]
            return data

        # when: it stalls (a long pause) past its lease, another replica takes the job over,
        # and then the stalled one wakes up and goes on
        process.send_signal(signal.SIGSTOP)
        await exports.start()

        async def taken_over() -> bool:
            return bool((await job())["attempt"] == 2)

        await eventually(taken_over, within=30)
        process.send_signal(signal.SIGCONT)
        ready = await exports.until_status(tenant.operator_key, export_id, within=60)
        # then: the job completed once, by the second attempt, with its file only
        assert ready["attempt"] == 2
        assert ready["rows_written"] == 4009
        folder = exports.storage_dir / tenant.id / export_id

        async def only_the_winners_file() -> bool:
            return sorted(p.name for p in folder.iterdir()) == ["2.csv"]

        await eventually(only_the_winners_file, within=30)
        assert process.returncode is None  # the stalled replica lives on, and lets go
        _, raw, _ = await exports.download(tenant.operator_key, export_id)
        assert len(parse_csv(raw)) == 4010
        assert await ready_events(exports, export_id) == 1


@pytest.mark.parametrize("exports", [{"worker_poll_interval_s": 600}], indirect=True)
async def test_an_export_that_keeps_failing_ends_failed(exports) -> None:
    async with moto_server() as endpoint:
        # given: a replica whose storage refuses every file (its bucket does not exist)
        tenant = await fed_tenant(exports)
        replica = await exports.start(
            storage="s3",
            s3_bucket="missing",
            s3_endpoint_url=endpoint,
            s3_access_key_id="test",
            s3_secret_access_key="test",
            max_attempts=2,
            retry_delay_s=0.2,
        )
        # when
        status, body = await exports.call(
            "POST", "/v1/exports", tenant.operator_key, {"type": "transactions"}, url=replica.url
        )
        assert status == 202
        # then
        failed = await exports.until_status(
            tenant.operator_key, body["data"]["id"], "FAILED", within=60
        )
        assert failed["attempt"] == 2
        assert failed["error"]["code"] == "export_failed"
        assert failed["download_url"] is None
        status, answer = await exports.call(
            "GET", f"/v1/exports/{failed['id']}/download", tenant.operator_key
        )
        assert status == 409
        assert answer["error"]["code"] == "export_not_ready"


@pytest.mark.parametrize("exports", [{"worker_poll_interval_s": 600}], indirect=True)
async def test_a_replica_shutting_down_hands_its_job_over_at_once(exports) -> None:
    # given: a replica writing slowly, with a lease far longer than the test waits
    tenant = await fed_tenant(exports, extra_lines=4000)
    leaving = await exports.start(throttle_bytes_per_s=60_000, lease_s=120.0, heartbeat_s=0.3)
    status, body = await exports.call(
        "POST", "/v1/exports", tenant.operator_key, {"type": "transactions"}, url=leaving.url
    )
    assert status == 202
    export_id = body["data"]["id"]

    async def writing() -> bool:
        _, found = await exports.call("GET", f"/v1/exports/{export_id}", tenant.operator_key)
        return bool(found["data"]["rows_written"] > 0)

    await eventually(writing, within=30)
    # when: it stops (a deploy) and another replica is there
    await leaving.stack.aclose()
    await exports.start()
    # then: the other one finishes the job long before the lease would have run out
    ready = await exports.until_status(tenant.operator_key, export_id, within=30)
    assert ready["attempt"] == 2
    assert ready["rows_written"] == 4009
