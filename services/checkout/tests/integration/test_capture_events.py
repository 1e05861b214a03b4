"""The capture service's events (as it publishes them on the bus) move the payment's lines and
status: CAPTURE_PENDING, PARTIALLY_PAID, PAID; a failure goes back; each in the timeline,
idempotently and in any order."""

import asyncio
import secrets
import uuid

from common.events import CaptureFailed, CaptureRequested, CaptureSucceeded
from common.runtime import DB_POOL
from common.testing.tenancy import publish
from common.testing.waiting import eventually

SPLITS = [
    {"party": "PLATFORM", "amount": 150, "rate": "2.5"},
    {"party": "MARKETPLACE", "amount": 600, "rate": "10"},
    {"party": "SUPPLIER", "amount": 5250, "rate": None},
]


async def authorised_payment(checkout, tenant):
    """An authorised payment of two logistic orders (6000 and 4000)."""
    response = await checkout.http.post(
        f"{checkout.url}/v1/checkout/sessions",
        json={
            "order_id": f"ord_{uuid.uuid4().hex[:8]}",
            "amount": {"value": 10000, "currency": "EUR"},
            "buyer_account": "acc_1",
            "return_url": "https://shop.example/return",
            "lines": [
                {"logistic_order_id": "lo_1", "supplier_id": tenant.suppliers[0], "amount": 6000},
                {"logistic_order_id": "lo_2", "supplier_id": tenant.suppliers[1], "amount": 4000},
            ],
        },
        headers={
            "Authorization": f"Bearer {tenant.storefront_key}",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    assert response.status == 201, await response.text()
    session = (await response.json())["data"]
    card = await checkout.tokenise("4242424242424242")
    paid = await checkout.http.post(
        f"{checkout.url}/v1/shop/payments",
        json={"payment_method": card},
        headers={
            "Authorization": f"Bearer {session['client_token']}",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    assert paid.status == 200, await paid.text()
    return await payment_of(checkout, tenant, session["id"])


async def payment_of(checkout, tenant, payment_id):
    response = await checkout.http.get(
        f"{checkout.url}/v1/admin/payments/{payment_id}",
        headers={"Authorization": f"Bearer {tenant.operator_key}"},
    )
    assert response.status == 200
    return (await response.json())["data"]


class Capture:
    """One capture of one line, whose events are published as the capture service does."""

    def __init__(self, checkout, tenant, payment, logistic_order_id, amount):
        self.checkout = checkout
        self.tenant = tenant
        self.id = f"cap_{secrets.token_hex(12)}"
        self.base = {
            "capture_id": self.id,
            "payment_id": payment["id"],
            "order_id": payment["order_id"],
            "logistic_order_id": logistic_order_id,
            "supplier_id": "sup_x",
            "amount": {"value": amount, "currency": "EUR"},
            "trigger": "ON_SHIPMENT",
        }

    async def requested(self, revision=1):
        await self.checkout.publish(
            "capture.requested",
            CaptureRequested(
                **self.base,
                revision=revision,
                splits=SPLITS,
                platform_rate="2.5",
                marketplace_rate="10",
            ),
            self.tenant.id,
        )

    async def succeeded(self, revision=3):
        await self.checkout.publish(
            "capture.succeeded",
            CaptureSucceeded(
                **self.base,
                revision=revision,
                psp_reference=secrets.token_hex(8).upper(),
                splits=SPLITS,
                platform_rate="2.5",
                marketplace_rate="10",
            ),
            self.tenant.id,
        )

    async def failed(self, revision=2):
        await self.checkout.publish(
            "capture.failed",
            CaptureFailed(
                **self.base,
                revision=revision,
                code="capture_failed",
                reason="Insufficient balance",
                retries_exhausted=False,
                outcome_known=True,
                intervention_id="int_1",
            ),
            self.tenant.id,
        )


async def until(checkout, tenant, payment_id, status, capture_entries):
    found = {}

    async def reached() -> bool:
        found["payment"] = await payment_of(checkout, tenant, payment_id)
        entries = [e for e in found["payment"]["timeline"] if e["kind"] == "capture"]
        return found["payment"]["status"] == status and len(entries) >= capture_entries

    await eventually(reached)
    return found["payment"]


def lines(payment):
    return {x["logistic_order_id"]: (x["status"], x["capture_id"]) for x in payment["lines"]}


async def test_the_payment_follows_its_lines_captures_to_paid(checkout):
    # given
    tenant = await checkout.new_tenant()
    payment = await authorised_payment(checkout, tenant)
    first = Capture(checkout, tenant, payment, "lo_1", 6000)
    second = Capture(checkout, tenant, payment, "lo_2", 4000)
    # when the first line's capture is requested
    await first.requested()
    # then
    now = await until(checkout, tenant, payment["id"], "CAPTURE_PENDING", 1)
    assert lines(now) == {"lo_1": ("CAPTURE_PENDING", first.id), "lo_2": ("PENDING", None)}
    # when it succeeds
    await first.succeeded()
    now = await until(checkout, tenant, payment["id"], "PARTIALLY_PAID", 2)
    assert lines(now)["lo_1"] == ("CAPTURED", first.id)
    # when the second is requested and succeeds
    await second.requested()
    await until(checkout, tenant, payment["id"], "CAPTURE_PENDING", 3)
    await second.succeeded()
    # then
    now = await until(checkout, tenant, payment["id"], "PAID", 4)
    assert lines(now) == {"lo_1": ("CAPTURED", first.id), "lo_2": ("CAPTURED", second.id)}
    moves = [
        (e["status_from"], e["status_to"], e["detail"]["event"])
        for e in now["timeline"]
        if e["kind"] == "capture"
    ]
    assert moves == [
        ("AUTHORIZED", "CAPTURE_PENDING", "capture.requested"),
        ("CAPTURE_PENDING", "PARTIALLY_PAID", "capture.succeeded"),
        ("PARTIALLY_PAID", "CAPTURE_PENDING", "capture.requested"),
        ("CAPTURE_PENDING", "PAID", "capture.succeeded"),
    ]


async def test_a_failed_capture_goes_back_and_a_retry_still_ends_paid(checkout):
    # given one line captured, the other's capture requested
    tenant = await checkout.new_tenant()
    payment = await authorised_payment(checkout, tenant)
    first = Capture(checkout, tenant, payment, "lo_1", 6000)
    second = Capture(checkout, tenant, payment, "lo_2", 4000)
    await first.requested()
    await first.succeeded()
    await second.requested()
    await until(checkout, tenant, payment["id"], "CAPTURE_PENDING", 3)
    # when the second fails
    await second.failed(revision=2)
    # then the payment is partly paid again
    now = await until(checkout, tenant, payment["id"], "PARTIALLY_PAID", 4)
    assert lines(now)["lo_2"] == ("CAPTURE_FAILED", second.id)
    # when an operator's retry requests it again and it succeeds
    await second.requested(revision=3)
    await second.succeeded(revision=5)
    # then
    await until(checkout, tenant, payment["id"], "PAID", 6)


async def test_a_failed_capture_of_the_only_line_in_flight_authorises_the_payment_again(checkout):
    # given a line's capture requested, no line captured
    tenant = await checkout.new_tenant()
    payment = await authorised_payment(checkout, tenant)
    first = Capture(checkout, tenant, payment, "lo_1", 6000)
    await first.requested()
    await until(checkout, tenant, payment["id"], "CAPTURE_PENDING", 1)
    # when it fails
    await first.failed(revision=2)
    # then the payment is authorised again, and says so with its lines, as at authorisation
    now = await until(checkout, tenant, payment["id"], "AUTHORIZED", 2)
    assert lines(now)["lo_1"] == ("CAPTURE_FAILED", first.id)
    authorised = await checkout.app[DB_POOL].fetch(
        "SELECT envelope->'data' AS data FROM outbox_log"
        " WHERE aggregate_id = $1 AND envelope->>'type' = 'payment.authorised' ORDER BY seq",
        payment["id"],
    )
    assert len(authorised) == 2
    assert authorised[1]["data"]["status_from"] == "CAPTURE_PENDING"
    assert authorised[1]["data"]["lines"] == authorised[0]["data"]["lines"]
    assert [x["logistic_order_id"] for x in authorised[1]["data"]["lines"]] == ["lo_1", "lo_2"]


async def test_capture_events_out_of_order_or_twice_change_nothing_the_second_time(checkout):
    # given
    tenant = await checkout.new_tenant()
    payment = await authorised_payment(checkout, tenant)
    first = Capture(checkout, tenant, payment, "lo_1", 6000)
    # when the success arrives first, twice, and the older request after it
    await first.succeeded()
    await until(checkout, tenant, payment["id"], "PARTIALLY_PAID", 1)
    await first.succeeded()  # another copy (a new message id, the same revision)
    await first.requested()
    # then the payment stays where the newest fact put it
    now = await until(checkout, tenant, payment["id"], "PARTIALLY_PAID", 3)
    assert lines(now)["lo_1"] == ("CAPTURED", first.id)
    late = [e for e in now["timeline"] if e["kind"] == "capture"][1:]
    assert [e["detail"]["applied"] for e in late] == [False, False]
    assert all("older than" in e["detail"]["reason"] for e in late)


async def test_capture_events_arriving_together_are_applied_in_order_to_each_payment(checkout):
    # given several payments of two lines each
    tenant = await checkout.new_tenant()
    payments = [await authorised_payment(checkout, tenant) for _ in range(4)]
    captures = [
        (
            Capture(checkout, tenant, p, "lo_1", 6000).base,
            Capture(checkout, tenant, p, "lo_2", 4000).base,
        )
        for p in payments
    ]

    # when their capture events arrive back to back (so consumed in batches that hold several
    # events of one payment), each step of every payment before the next step of any
    def requested(base):
        return "capture.requested", CaptureRequested(
            **base, revision=1, splits=SPLITS, platform_rate="2.5", marketplace_rate="10"
        )

    def succeeded(base):
        return "capture.succeeded", CaptureSucceeded(
            **base,
            revision=3,
            psp_reference=secrets.token_hex(8).upper(),
            splits=SPLITS,
            platform_rate="2.5",
            marketplace_rate="10",
        )

    events = [
        step(pair[line])
        for step, line in ((requested, 0), (requested, 1), (succeeded, 0), (succeeded, 1))
        for pair in captures
    ]
    pool = checkout.app[DB_POOL]
    ids = [p["id"] for p in payments]
    revisions = dict(
        await pool.fetch("SELECT id, revision FROM payments WHERE id = ANY($1::text[])", ids)
    )
    async with pool.acquire() as holder, holder.transaction():
        # the first payment is held, so that the consumer's first transaction waits and the
        # rest gather behind it, to be taken in batches
        await holder.execute("SELECT 1 FROM payments WHERE id = $1 FOR UPDATE", payments[0]["id"])
        await publish(checkout.amqp_url, checkout.exchange_name, events, tenant_id=tenant.id)
        await asyncio.sleep(0.5)

    # then each payment went through the same moves as if its events had come one by one
    for payment in payments:
        now = await until(checkout, tenant, payment["id"], "PAID", 4)
        moves = [
            (
                e["status_from"],
                e["status_to"],
                e["detail"]["event"],
                e["detail"]["logistic_order_id"],
            )
            for e in now["timeline"]
            if e["kind"] == "capture"
        ]
        assert moves == [
            ("AUTHORIZED", "CAPTURE_PENDING", "capture.requested", "lo_1"),
            ("CAPTURE_PENDING", "CAPTURE_PENDING", "capture.requested", "lo_2"),
            ("CAPTURE_PENDING", "CAPTURE_PENDING", "capture.succeeded", "lo_1"),
            ("CAPTURE_PENDING", "PAID", "capture.succeeded", "lo_2"),
        ]
    # and each move published its event, in order, and counted in the payment's revision
    rows = await pool.fetch(
        "SELECT aggregate_id, envelope->'data'->>'status_from' AS status_from,"
        " envelope->'data'->>'status' AS status FROM outbox_log"
        " WHERE aggregate_id = ANY($1::text[]) AND envelope->>'type' = 'payment.status_changed'"
        " ORDER BY seq",
        ids,
    )
    for payment_id in ids:
        moved = [(r["status_from"], r["status"]) for r in rows if r["aggregate_id"] == payment_id]
        assert moved[-2:] == [("AUTHORIZED", "CAPTURE_PENDING"), ("CAPTURE_PENDING", "PAID")]
    now = dict(
        await pool.fetch("SELECT id, revision FROM payments WHERE id = ANY($1::text[])", ids)
    )
    assert now == {payment_id: revisions[payment_id] + 2 for payment_id in ids}
