"""The capture service's refund and chargeback events (as it publishes them on the bus) move
the payment through WAITING_REFUND, PARTIALLY_REFUNDED, REFUNDED and CHARGEBACK (and back on
a reversal), each in the timeline."""

import secrets

from common.events import ChargebackEvent, RefundFailed, RefundRequested, RefundSucceeded
from common.testing.waiting import eventually

from .test_capture_events import Capture, authorised_payment, payment_of


def refund_base(payment, amount, lo="lo_1"):
    return {
        "refund_id": f"rfd_{secrets.token_hex(12)}",
        "payment_id": payment["id"],
        "order_id": payment["order_id"],
        "capture_id": "cap_x",
        "logistic_order_id": lo,
        "supplier_id": "sup_x",
        "amount": {"value": amount, "currency": "EUR"},
        "reason": "customer_request",
        "lines": [
            {
                "capture_id": "cap_x",
                "logistic_order_id": lo,
                "supplier_id": "sup_x",
                "party": "SUPPLIER",
                "amount": amount,
            }
        ],
    }


async def until_status(checkout, tenant, payment_id, status, refund_entries):
    found = {}

    async def reached() -> bool:
        found["payment"] = await payment_of(checkout, tenant, payment_id)
        entries = [e for e in found["payment"]["timeline"] if e["kind"] == "refund"]
        return found["payment"]["status"] == status and len(entries) >= refund_entries

    await eventually(reached)
    return found["payment"]


def eur(value):
    return {"value": value, "currency": "EUR"}


async def test_refunds_and_a_chargeback_move_the_payment_and_its_timeline(checkout):
    # given a paid payment of 10000
    tenant = await checkout.new_tenant()
    payment = await authorised_payment(checkout, tenant)
    for lo, amount in (("lo_1", 6000), ("lo_2", 4000)):
        capture = Capture(checkout, tenant, payment, lo, amount)
        await capture.requested()
        await capture.succeeded()
    await until_status(checkout, tenant, payment["id"], "PAID", 0)
    pid = payment["id"]
    # a refund of 1000 is requested, then fails: back to PAID
    first = refund_base(payment, 1000)
    await checkout.publish(
        "refund.requested", RefundRequested(**first, revision=1, funds_check=False), tenant.id
    )
    await until_status(checkout, tenant, pid, "WAITING_REFUND", 1)
    await checkout.publish(
        "refund.failed",
        RefundFailed(
            **first, revision=2, code="refund_failed", message="x", payment_refunded=eur(0)
        ),
        tenant.id,
    )
    await until_status(checkout, tenant, pid, "PAID", 2)
    # another succeeds: PARTIALLY_REFUNDED
    second = refund_base(payment, 3000)
    await checkout.publish(
        "refund.requested", RefundRequested(**second, revision=1, funds_check=True), tenant.id
    )
    await until_status(checkout, tenant, pid, "WAITING_REFUND", 3)
    await checkout.publish(
        "refund.succeeded",
        RefundSucceeded(
            **second,
            revision=2,
            psp_reference="P1",
            payment_captured=eur(10000),
            payment_refunded=eur(3000),
        ),
        tenant.id,
    )
    await until_status(checkout, tenant, pid, "PARTIALLY_REFUNDED", 4)
    # a chargeback, then its reversal: CHARGEBACK, then back to PARTIALLY_REFUNDED
    chargeback = {
        "chargeback_id": "dsp_1",
        "payment_id": pid,
        "order_id": payment["order_id"],
        "psp_reference": "CB1",
        "amount": eur(7000),
        "lines": [],
    }
    await checkout.publish(
        "chargeback.received",
        ChargebackEvent(**chargeback, revision=1, stage="CHARGEBACK"),
        tenant.id,
    )
    await until_status(checkout, tenant, pid, "CHARGEBACK", 5)
    await checkout.publish(
        "chargeback.reversed",
        ChargebackEvent(**chargeback, revision=2, stage="CHARGEBACK_REVERSED"),
        tenant.id,
    )
    # the reversal does not carry the refunded total: back to PAID (see refund_fact)
    now = await until_status(checkout, tenant, pid, "PAID", 6)
    moves = [
        (e["status_from"], e["status_to"], e["detail"]["event"])
        for e in now["timeline"]
        if e["kind"] == "refund"
    ]
    assert moves == [
        ("PAID", "WAITING_REFUND", "refund.requested"),
        ("WAITING_REFUND", "PAID", "refund.failed"),
        ("PAID", "WAITING_REFUND", "refund.requested"),
        ("WAITING_REFUND", "PARTIALLY_REFUNDED", "refund.succeeded"),
        ("PARTIALLY_REFUNDED", "CHARGEBACK", "chargeback.received"),
        ("CHARGEBACK", "PAID", "chargeback.reversed"),
    ]


async def test_a_full_refund_makes_the_payment_refunded(checkout):
    tenant = await checkout.new_tenant()
    payment = await authorised_payment(checkout, tenant)
    for lo, amount in (("lo_1", 6000), ("lo_2", 4000)):
        capture = Capture(checkout, tenant, payment, lo, amount)
        await capture.requested()
        await capture.succeeded()
    await until_status(checkout, tenant, payment["id"], "PAID", 0)
    whole = refund_base(payment, 10000)
    await checkout.publish(
        "refund.requested", RefundRequested(**whole, revision=1, funds_check=False), tenant.id
    )
    await checkout.publish(
        "refund.succeeded",
        RefundSucceeded(
            **whole,
            revision=2,
            psp_reference="P2",
            payment_captured=eur(10000),
            payment_refunded=eur(10000),
        ),
        tenant.id,
    )
    await until_status(checkout, tenant, payment["id"], "REFUNDED", 2)
