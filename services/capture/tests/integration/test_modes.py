"""The four capture modes of DESIGN §6, each through the real service and the sandbox."""

from datetime import datetime, timedelta

from common.testing.waiting import eventually


async def test_immediate_captures_every_line_right_after_authorisation(capture):
    # given
    tenant = await capture.new_tenant(capture_mode="IMMEDIATE")
    # when
    payment = await capture.authorise(tenant, [6000, 4000])
    # then
    done = await capture.until_captured(tenant, payment, count=2)
    assert sorted((c["logistic_order_id"], c["trigger"]) for c in done) == [
        ("lo_1", "IMMEDIATE"),
        ("lo_2", "IMMEDIATE"),
    ]
    assert sorted(m["amount"]["value"] for m in await capture.psp_captures(payment)) == [
        4000,
        6000,
    ]
    assert len(await capture.events("capture.succeeded", payment)) == 2


async def test_the_sessions_capture_mode_overrides_the_tenants(capture):
    # given a MANUAL tenant
    tenant = await capture.new_tenant(capture_mode="MANUAL")
    # when the session asked for IMMEDIATE
    payment = await capture.authorise(tenant, [5000], capture_mode="IMMEDIATE")
    # then
    [done] = await capture.until_captured(tenant, payment)
    assert done["trigger"] == "IMMEDIATE"


async def test_delayed_captures_when_the_delay_has_passed_on_the_clock(capture, clock):
    # given a tenant capturing 48 hours after authorisation
    tenant = await capture.new_tenant(capture_mode="DELAYED", capture_delay_hours=48)
    payment = await capture.authorise(tenant, [7000])
    [scheduled] = await capture.events("capture.scheduled", payment)
    # then it is scheduled at authorisation + 48 h, and nothing is captured yet
    async with capture.main.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT s.due_at, s.status, p.authorised_at FROM scheduled_captures s"
            " JOIN payments p USING (tenant_id, payment_id) WHERE s.payment_id = $1",
            payment.id,
        )
    assert row["status"] == "SCHEDULED"
    assert row["due_at"] - row["authorised_at"] == timedelta(hours=48)
    assert datetime.fromisoformat(scheduled["due_at"]) == row["due_at"]
    assert scheduled["logistic_order_ids"] == ["lo_1"]
    assert await capture.captures(tenant, payment) == []
    # when two days pass (on the injected clock)
    clock.advance(timedelta(hours=48, seconds=1))
    # then
    [done] = await capture.until_captured(tenant, payment)
    assert done["trigger"] == "DELAYED"
    assert len(await capture.psp_captures(payment)) == 1
    async with capture.main.pool.acquire() as conn:
        status = await conn.fetchval(
            "SELECT status FROM scheduled_captures WHERE payment_id = $1", payment.id
        )
    assert status == "DONE"


async def test_a_delayed_payment_captured_early_is_not_captured_again_when_due(capture, clock):
    # given
    tenant = await capture.new_tenant(capture_mode="DELAYED", capture_delay_hours=24)
    payment = await capture.authorise(tenant, [7000])
    await capture.events("capture.scheduled", payment)
    status, body = await capture.capture_now(tenant, payment)
    assert status == 202, body
    await capture.until_captured(tenant, payment)
    # when the schedule comes due
    clock.advance(timedelta(hours=25))

    async def schedule_done() -> bool:
        async with capture.main.pool.acquire() as conn:
            return (
                await conn.fetchval(
                    "SELECT outcome FROM scheduled_captures WHERE payment_id = $1", payment.id
                )
                == "0 capture(s) created"
            )

    await eventually(schedule_done)
    # then
    [only] = await capture.captures(tenant, payment)
    assert only["trigger"] == "MANUAL"
    assert len(await capture.psp_captures(payment)) == 1


async def test_a_cancelled_delayed_payment_is_not_captured(capture, clock):
    # given
    tenant = await capture.new_tenant(capture_mode="DELAYED", capture_delay_hours=1)
    payment = await capture.authorise(tenant, [7000])
    await capture.events("capture.scheduled", payment)
    await capture.report_closed(tenant, payment, "CANCELLED")
    # when
    clock.advance(timedelta(hours=2))

    async def skipped() -> bool:
        async with capture.main.pool.acquire() as conn:
            return (
                await conn.fetchval(
                    "SELECT status FROM scheduled_captures WHERE payment_id = $1", payment.id
                )
                == "SKIPPED"
            )

    await eventually(skipped)
    # then
    assert await capture.captures(tenant, payment) == []
    assert await capture.psp_captures(payment) == []


async def test_on_shipment_captures_each_logistic_order_when_it_ships(capture):
    # given a payment of two logistic orders
    tenant = await capture.new_tenant(capture_mode="ON_SHIPMENT")
    payment = await capture.authorise(tenant, [6000, 4000])
    # when the first ships
    await capture.ship(tenant, payment, "lo_1")
    # then only it is captured
    [first] = await capture.until_captured(tenant, payment)
    assert (first["logistic_order_id"], first["trigger"]) == ("lo_1", "ON_SHIPMENT")
    # and when the second ships
    await capture.ship(tenant, payment, "lo_2")
    # then
    done = await capture.until_captured(tenant, payment, count=2)
    assert sorted(c["logistic_order_id"] for c in done) == ["lo_1", "lo_2"]
    assert len(await capture.psp_captures(payment)) == 2
    events = await capture.logistic_order_events(tenant, order_id=payment.order_id)
    assert [(e["outcome"], e["capture_id"] is not None) for e in events] == [
        ("capture_created", True),
        ("capture_created", True),
    ]


async def test_a_shipment_before_the_authorisation_is_captured_by_the_authorisation(capture):
    # given the OMS reports SHIPPED while the payment is created but not yet authorised
    tenant = await capture.new_tenant(capture_mode="ON_SHIPMENT")
    payment = await capture.authorise(tenant, [8000], publish_authorised=False)

    async def created() -> bool:
        async with capture.main.pool.acquire() as conn:
            return bool(
                await conn.fetchval("SELECT 1 FROM payments WHERE payment_id = $1", payment.id)
            )

    await eventually(created)
    await capture.ship(tenant, payment)

    async def waiting() -> bool:
        found = await capture.logistic_order_events(tenant, order_id=payment.order_id)
        return [e["outcome"] for e in found] == ["awaiting_authorisation"]

    await eventually(waiting)
    assert await capture.captures(tenant, payment) == []
    # when the authorisation arrives
    await capture.report_authorised(tenant, payment)
    # then the shipment is captured
    [done] = await capture.until_captured(tenant, payment)
    assert done["trigger"] == "ON_SHIPMENT"
    [event] = await capture.logistic_order_events(tenant, order_id=payment.order_id)
    assert (event["outcome"], event["reason"], event["capture_id"]) == (
        "capture_created",
        "shipped_before_authorisation",
        done["id"],
    )


async def test_manual_mode_captures_nothing_on_its_own(capture):
    # given a MANUAL tenant, a payment, and its SHIPPED event
    tenant = await capture.new_tenant(capture_mode="MANUAL")
    payment = await capture.authorise(tenant, [5000])
    await capture.ship(tenant, payment)

    async def recorded() -> bool:
        return bool(await capture.logistic_order_events(tenant, order_id=payment.order_id))

    await eventually(recorded)
    # then
    [event] = await capture.logistic_order_events(tenant, order_id=payment.order_id)
    assert (event["outcome"], event["reason"]) == ("ignored", "capture_mode_not_on_shipment")
    assert await capture.captures(tenant, payment) == []
    # and when the operator captures it
    status, body = await capture.capture_now(tenant, payment)
    assert status == 202, body
    [done] = await capture.until_captured(tenant, payment)
    assert done["trigger"] == "MANUAL"
