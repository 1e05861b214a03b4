"""Bad or useless OMS events (DESIGN §3 contract, invariant 9): malformed ones go to the DLQ
with the reason and never block the queue; the others are recorded with the reason and
ignored. Nothing is captured by any of them."""

import json
import secrets
import uuid
from datetime import UTC, datetime

from capture.clock import RANDOM_IDS
from capture.domain import Line
from capture.repo import PgRepo
from capture.shipment_domain import ShipmentLine, decide_shipment
from capture.testing import logistic_order_event
from common.events import LogisticOrderStatusChanged
from common.testing.waiting import eventually


async def test_malformed_events_go_to_the_dlq_with_the_reason_and_do_not_block_the_queue(
    capture,
):
    # given
    tenant = await capture.new_tenant(capture_mode="ON_SHIPMENT")
    payment = await capture.authorise(tenant, [10000])
    good = logistic_order_event(
        tenant_id=tenant.id,
        order_id=payment.order_id,
        logistic_order_id="lo_1",
        supplier_id=tenant.suppliers[0],
    )
    no_timezone = {**good, "id": str(uuid.uuid4()), "occurred_at": "2026-11-24T10:00:00"}
    missing = {k: v for k, v in good.items() if k != "logistic_order_id"}
    lowercase = {**good, "id": str(uuid.uuid4()), "status": "shipped"}
    # when four poison messages come before a good one
    for body in (b"{not json", json.dumps(missing).encode(), no_timezone, lowercase):
        await capture.publish_oms(body)
    await capture.publish_oms(good)
    # then the good one is captured
    await capture.until_captured(tenant, payment)
    # and the others are parked with their reason
    parked = []

    async def all_parked() -> bool:
        parked.extend(await capture.dead_letters("capture.oms"))
        return len(parked) == 4

    await eventually(all_parked)
    reasons = [headers["x-error"] for _, headers in parked]
    assert all(r.startswith("not a valid logistic_order.status_changed event") for r in reasons)
    assert "logistic_order_id" in reasons[1]
    assert "occurred_at" in reasons[2]
    assert "status" in reasons[3]
    assert {headers["x-error-kind"] for _, headers in parked} == {"poison"}
    assert parked[0][0] == b"{not json"
    assert len(await capture.psp_captures(payment)) == 1


async def recorded(capture, tenant, **filters):
    found = []

    async def arrived() -> bool:
        found[:] = await capture.logistic_order_events(tenant, **filters)
        return bool(found)

    await eventually(arrived)
    return found


async def test_a_shipped_event_of_an_unknown_tenant_is_recorded_and_ignored(capture):
    # given
    event = logistic_order_event(
        tenant_id=f"ten_{secrets.token_hex(6)}",
        order_id="ord_1",
        logistic_order_id="lo_1",
        supplier_id="sup_1",
    )
    # when
    await capture.publish_oms(event)

    async def found() -> bool:
        async with capture.main.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT outcome, reason FROM logistic_order_events WHERE oms_event_id = $1",
                event["id"],
            )
        return row is not None and (row["outcome"], row["reason"]) == (
            "ignored",
            "tenant_unknown",
        )

    # then: in the table and in the metrics (no operator of that tenant exists to ask)
    await eventually(found)
    async with capture.http.get(f"{capture.url}/metrics") as response:
        metrics = await response.text()
    assert 'capture_oms_events_total{outcome="ignored",reason="tenant_unknown"} 1.0' in metrics


async def test_shipped_events_that_capture_nothing_say_why(capture):
    # given an ON_SHIPMENT tenant with payments in every state that cannot be captured
    tenant = await capture.new_tenant(capture_mode="ON_SHIPMENT")
    unpaid = await capture.authorise(tenant, [1000], publish_authorised=False)
    cancelled = await capture.authorise(tenant, [2000])
    await capture.report_closed(tenant, cancelled, "CANCELLED")
    wire = await capture.authorise(
        tenant, [3000], payment_option="BANK_WIRE_ON_DUE_DATE", publish_authorised=False
    )
    authorised = await capture.authorise(tenant, [4000])

    async def replicated() -> bool:
        async with capture.main.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT payment_id, status FROM payments WHERE tenant_id = $1", tenant.id
            )
        return {r["payment_id"]: r["status"] for r in rows} == {
            unpaid.id: "CREATED",
            cancelled.id: "CANCELLED",
            wire.id: "CREATED",
            authorised.id: "AUTHORISED",
        }

    await eventually(replicated)
    # when the OMS reports on each of them, on a logistic order it never had, on another
    # supplier's logistic order, and a status that is not SHIPPED
    await capture.ship(tenant, unpaid)
    await capture.ship(tenant, cancelled)
    await capture.ship(tenant, wire)
    await capture.publish_oms(
        logistic_order_event(
            tenant_id=tenant.id,
            order_id=authorised.order_id,
            logistic_order_id="lo_unknown",
            supplier_id=tenant.suppliers[0],
        )
    )
    await capture.ship(tenant, authorised, supplier_id=tenant.suppliers[1])
    await capture.ship(tenant, authorised, status="WAITING_SHIPMENT")

    async def all_recorded() -> bool:
        return len(await capture.logistic_order_events(tenant)) == 6

    await eventually(all_recorded)
    # then each is recorded with what it did and why
    events = await capture.logistic_order_events(tenant)
    seen = {
        (e["order_id"], e["logistic_order_id"], e["status"], e["supplier_id"]): e for e in events
    }
    outcome = {key: (e["outcome"], e["reason"]) for key, e in seen.items()}
    s0, s1 = tenant.suppliers
    assert outcome == {
        (unpaid.order_id, "lo_1", "SHIPPED", s0): (
            "awaiting_authorisation",
            "payment_not_authorised_yet",
        ),
        (cancelled.order_id, "lo_1", "SHIPPED", s0): ("ignored", "payment_not_authorised"),
        (wire.order_id, "lo_1", "SHIPPED", s0): ("ignored", "payment_option_not_capturable"),
        (authorised.order_id, "lo_unknown", "SHIPPED", s0): ("ignored", "logistic_order_unknown"),
        (authorised.order_id, "lo_1", "SHIPPED", s1): ("ignored", "supplier_mismatch"),
        (authorised.order_id, "lo_1", "WAITING_SHIPMENT", s0): ("recorded", None),
    }
    status, body = await capture.call(
        "GET", "/v1/admin/logistic-order-events?outcome=ignored", tenant.operator_key
    )
    assert status == 200, body
    assert len(body["data"]) == 4
    # and nothing was captured
    for payment in (unpaid, cancelled, wire, authorised):
        assert await capture.captures(tenant, payment) == []
    assert await capture.psp_capture_requests(tenant) == []


async def test_events_with_nul_bytes_in_their_ids_go_straight_to_the_dlq(capture):
    # given an authorised ON_SHIPMENT payment, and SHIPPED events for it whose ids hold a NUL
    # byte (valid JSON, but no PostgreSQL text can store it)
    tenant = await capture.new_tenant(capture_mode="ON_SHIPMENT")
    payment = await capture.authorise(tenant, [10000])
    good = logistic_order_event(
        tenant_id=tenant.id,
        order_id=payment.order_id,
        logistic_order_id="lo_1",
        supplier_id=tenant.suppliers[0],
    )
    poisoned = [
        {**good, "id": "oms-\u0000-1"},
        {**good, "id": str(uuid.uuid4()), "order_id": payment.order_id + "\u0000"},
        {**good, "id": str(uuid.uuid4()), "logistic_order_id": "lo_1\u0000"},
    ]
    # when they come before a good one
    for body in poisoned:
        await capture.publish_oms(json.dumps(body).encode())
    await capture.publish_oms(good)
    # then the good one is captured
    await capture.until_captured(tenant, payment)
    # and the three are parked at once as poison (never retried), naming the field
    parked = []

    async def all_parked() -> bool:
        parked.extend(await capture.dead_letters("capture.oms"))
        return len(parked) == 3

    await eventually(all_parked)
    assert {headers["x-error-kind"] for _, headers in parked} == {"poison"}
    assert all("x-attempt" not in headers for _, headers in parked)
    reasons = sorted(headers["x-error"] for _, headers in parked)
    assert [r.split(": ")[1] for r in reasons] == ["id", "logistic_order_id", "order_id"]
    assert all("not allowed" in r for r in reasons)
    assert len(await capture.psp_captures(payment)) == 1


async def test_a_shipment_decided_on_a_stale_read_records_capture_exists_and_enqueues_nothing(
    capture,
):
    """The save's own guard: had another trigger committed the line's capture after the
    SHIPPED's read, the INSERT skips it and the OMS event says so, with no second event."""
    # given a line captured by ADM-PAY-101, and a SHIPPED decided as if it were not
    tenant = await capture.new_tenant(capture_mode="ON_SHIPMENT")
    payment = await capture.authorise(tenant, [3000])
    status, _ = await capture.capture_now(tenant, payment)
    assert status == 202
    event = LogisticOrderStatusChanged.model_validate(
        logistic_order_event(
            tenant_id=tenant.id,
            order_id=payment.order_id,
            logistic_order_id="lo_1",
            supplier_id=tenant.suppliers[0],
        )
    )
    message_id = str(uuid.uuid4())
    async with capture.main.pool.acquire() as conn, conn.transaction():
        repo = PgRepo(conn)
        [(tenancy, _)] = await repo.load_shipments([event])
        stale = decide_shipment(
            event,
            tenancy,
            [
                ShipmentLine(
                    await repo.lock_payment(tenant.id, payment.id), only_line(payment), None
                )
            ],
            now=datetime.now(UTC),
            ids=RANDOM_IDS,
        )
        assert stale.outcome.outcome == "capture_created"
        # this line's capture.requested events only: the executor commits the manual
        # capture's own events meanwhile
        requested = (
            "SELECT count(*) FROM outbox_log WHERE envelope->>'type' = 'capture.requested'"
            " AND envelope->'data'->>'payment_id' = $1"
        )
        outbox_before = await conn.fetchval(requested, payment.id)
        # when
        recorded = await repo.save_shipment(message_id, event, stale)
        outbox_after = await conn.fetchval(requested, payment.id)
        row = await conn.fetchrow(
            "SELECT outcome, reason, capture_id FROM logistic_order_events WHERE id = $1",
            message_id,
        )
    # then
    assert (recorded.outcome, recorded.reason, recorded.capture_id) == (
        "ignored",
        "capture_exists",
        None,
    )
    assert (row["outcome"], row["reason"], row["capture_id"]) == ("ignored", "capture_exists", None)
    assert outbox_after == outbox_before
    assert len(await capture.captures(tenant, payment)) == 1


def only_line(payment):
    [line] = payment.lines
    return Line(line["logistic_order_id"], line["supplier_id"], line["amount"])


async def test_the_batch_statements_are_planned_once_and_reused(capture):
    # given batches of OMS events and of captures of several sizes loaded on one connection
    async with capture.main.pool.acquire() as conn, conn.transaction():
        repo = PgRepo(conn)
        for size in (1, 3, 2, 7, 1, 4, 2, 5):
            events = [
                LogisticOrderStatusChanged.model_validate(
                    logistic_order_event(
                        tenant_id="ten_x",
                        order_id=f"ord_{n}",
                        logistic_order_id="lo_1",
                        supplier_id="sup_x",
                    )
                )
                for n in range(size)
            ]
            assert len(await repo.load_shipments(events)) == size
            assert await repo.lock_captures([f"cap_{n}" for n in range(size)]) == {}
        # then, past PostgreSQL's five custom plans, each statement runs its generic plan
        # instead of being planned again for each batch
        plans = await conn.fetch(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE ltrim(statement, E' \\n') LIKE 'SELECT k.n, t.data AS tenant_data%'"
            " OR statement LIKE 'SELECT c.%FROM captures c WHERE c.id = ANY%'"
        )
    assert [(p["generic_plans"], p["custom_plans"]) for p in plans] == [(3, 5), (3, 5)]
