"""PSP notifications (`psp.notification.received`, as the webhooks service publishes them)
drive a payment's status through the status machine, idempotently and in any order; each one
appears in the payment's timeline."""

import asyncio
import secrets
import uuid

from common.events import EventType, PspNotificationReceived, make_envelope
from common.testing.tenancy import publish_envelopes
from common.testing.waiting import eventually


async def new_session(checkout, tenant, amount=15000):
    response = await checkout.http.post(
        f"{checkout.url}/v1/checkout/sessions",
        json={
            "order_id": f"ord_{uuid.uuid4().hex[:8]}",
            "amount": {"value": amount, "currency": "EUR"},
            "buyer_account": "acc_1",
            "return_url": "https://shop.example/return",
            "lines": [
                {"logistic_order_id": "lo_1", "supplier_id": tenant.suppliers[0], "amount": amount}
            ],
        },
        headers={
            "Authorization": f"Bearer {tenant.storefront_key}",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )
    assert response.status == 201, await response.text()
    return (await response.json())["data"]


async def pay(checkout, session, card):
    return await checkout.http.post(
        f"{checkout.url}/v1/shop/payments",
        json={
            "payment_method": card,
            "browser_info": {"userAgent": "test", "acceptHeader": "*/*"},
        },
        headers={
            "Authorization": f"Bearer {session['client_token']}",
            "Idempotency-Key": uuid.uuid4().hex,
        },
    )


async def admin_payment(checkout, tenant, payment_id):
    response = await checkout.http.get(
        f"{checkout.url}/v1/admin/payments/{payment_id}",
        headers={"Authorization": f"Bearer {tenant.operator_key}"},
    )
    return (await response.json())["data"]


async def pending_payment(checkout, tenant):
    """A payment whose PSP call timed out: AUTHORIZATION_PENDING, waiting for the webhook."""
    session = await new_session(checkout, tenant)
    card = await checkout.tokenise("4242424242424242")
    await checkout.sandbox.faults(tenant.merchant_account, timeout=True, hang_ms=5000)
    response = await pay(checkout, session, card)
    assert response.status == 202
    await checkout.sandbox.faults(tenant.merchant_account, timeout=False)
    return session["id"]


async def notify(
    checkout,
    tenant,
    payment_id,
    *,
    event_code="AUTHORISATION",
    success=True,
    value=15000,
    psp_reference=None,
    reason=None,
    merchant_reference=None,
    original_reference=None,
):
    await checkout.publish(
        "psp.notification.received",
        PspNotificationReceived(
            notification_id=f"ntf_{secrets.token_hex(6)}",
            psp="adyen",
            merchant_account=tenant.merchant_account,
            event_code=event_code,
            success=success,
            psp_reference=psp_reference or secrets.token_hex(8).upper(),
            merchant_reference=merchant_reference or payment_id,
            original_reference=original_reference,
            amount={"value": value, "currency": "EUR"},
            reason=reason,
        ),
        tenant.id,
    )


async def test_a_notification_with_fields_this_consumer_does_not_know_is_applied(checkout):
    # given a pending payment, and a newer webhooks service that adds fields to the payload
    tenant = await checkout.new_tenant()
    payment_id = await pending_payment(checkout, tenant)
    envelope = make_envelope(
        EventType.PSP_NOTIFICATION_RECEIVED,
        PspNotificationReceived(
            notification_id=f"ntf_{secrets.token_hex(6)}",
            psp="adyen",
            merchant_account=tenant.merchant_account,
            event_code="AUTHORISATION",
            success=True,
            psp_reference="PSPREF0EXTRA",
            merchant_reference=payment_id,
            amount={"value": 15000, "currency": "EUR"},
        ),
        tenant_id=tenant.id,
        correlation_id="test",
    )
    newer = envelope.model_copy(
        update={
            "data": {
                **envelope.data,
                "risk_score": 12,
                "amount": {**envelope.data["amount"], "settlement_currency": "EUR"},
            }
        }
    )
    # when
    await publish_envelopes(checkout.amqp_url, checkout.exchange_name, [newer])
    # then it is applied like any other, not dead-lettered
    payment = await wait_for_notifications(checkout, tenant, payment_id, 1)
    assert payment["status"] == "AUTHORIZED"
    assert payment["psp_reference"] == "PSPREF0EXTRA"
    assert payment["timeline"][-1]["detail"]["notification_id"] == envelope.data["notification_id"]


async def wait_for_notifications(checkout, tenant, payment_id, count):
    found = {}

    async def arrived():
        found["payment"] = await admin_payment(checkout, tenant, payment_id)
        timeline = found["payment"]["timeline"]
        return sum("notification_id" in e["detail"] for e in timeline) >= count

    await eventually(arrived)
    return found["payment"]


async def test_an_authorisation_webhook_settles_a_pending_payment(checkout):
    # given
    tenant = await checkout.new_tenant()
    payment_id = await pending_payment(checkout, tenant)
    # when
    await notify(checkout, tenant, payment_id, psp_reference="PSPREF0001")
    # then
    payment = await wait_for_notifications(checkout, tenant, payment_id, 1)
    assert payment["status"] == "AUTHORIZED"
    assert payment["psp_reference"] == "PSPREF0001"
    last = payment["timeline"][-1]
    assert (last["kind"], last["status_from"], last["status_to"]) == (
        "psp_notification",
        "AUTHORIZATION_PENDING",
        "AUTHORIZED",
    )
    assert last["detail"]["event_code"] == "AUTHORISATION"


async def test_a_refusal_webhook_refuses_a_pending_payment(checkout):
    # given
    tenant = await checkout.new_tenant()
    payment_id = await pending_payment(checkout, tenant)
    # when
    await notify(checkout, tenant, payment_id, success=False, reason="Insufficient funds")
    # then
    payment = await wait_for_notifications(checkout, tenant, payment_id, 1)
    assert payment["status"] == "REFUSED"
    assert payment["refusal_reason"] == "Insufficient funds"


async def test_repeated_and_late_webhooks_change_nothing_but_are_recorded(checkout):
    # given an authorised payment
    tenant = await checkout.new_tenant()
    payment_id = await pending_payment(checkout, tenant)
    await notify(checkout, tenant, payment_id, psp_reference="PSPREF0002")
    await wait_for_notifications(checkout, tenant, payment_id, 1)
    # when the same authorisation comes again, then a late refusal
    await notify(checkout, tenant, payment_id, psp_reference="PSPREF0002")
    await notify(checkout, tenant, payment_id, success=False, psp_reference="PSPREF0002")
    # then
    payment = await wait_for_notifications(checkout, tenant, payment_id, 3)
    assert payment["status"] == "AUTHORIZED"
    late = [e for e in payment["timeline"] if "notification_id" in e["detail"]][1:]
    assert [(e["kind"], e["status_from"], e["status_to"]) for e in late] == [
        ("psp_notification", "AUTHORIZED", "AUTHORIZED"),
        ("refused_transition", "AUTHORIZED", None),
    ]


async def test_an_authorisation_with_another_amount_is_an_anomaly_not_applied(checkout):
    # given
    tenant = await checkout.new_tenant()
    payment_id = await pending_payment(checkout, tenant)
    # when
    await notify(checkout, tenant, payment_id, value=1)
    # then
    payment = await wait_for_notifications(checkout, tenant, payment_id, 1)
    assert payment["status"] == "AUTHORIZATION_PENDING"
    assert payment["timeline"][-1]["kind"] == "psp_notification_anomaly"


async def test_a_cancellation_webhook_cancels_an_authorised_payment(checkout):
    # given
    tenant = await checkout.new_tenant()
    payment_id = await pending_payment(checkout, tenant)
    await notify(checkout, tenant, payment_id)
    await wait_for_notifications(checkout, tenant, payment_id, 1)
    # when
    await notify(checkout, tenant, payment_id, event_code="CANCELLATION")
    # then
    payment = await wait_for_notifications(checkout, tenant, payment_id, 2)
    assert payment["status"] == "CANCELLED"


async def test_a_webhook_for_another_tenants_payment_changes_nothing(checkout):
    # given
    tenant = await checkout.new_tenant()
    other = await checkout.new_tenant()
    payment_id = await pending_payment(checkout, tenant)
    # when the other tenant's notification names this payment, then this tenant's own arrives
    await notify(checkout, other, payment_id)
    await notify(checkout, tenant, payment_id, event_code="PENDING")
    # then only the tenant's own is recorded, and it applied nothing
    payment = await wait_for_notifications(checkout, tenant, payment_id, 1)
    assert payment["status"] == "AUTHORIZATION_PENDING"
    kinds = [e["detail"].get("event_code") for e in payment["timeline"]]
    assert "AUTHORISATION" not in kinds
    assert payment["timeline"][-1]["detail"]["applied"] is False


async def test_a_modification_webhook_is_found_by_the_payments_psp_reference(checkout):
    # given an authorised payment
    tenant = await checkout.new_tenant()
    payment_id = await pending_payment(checkout, tenant)
    await notify(checkout, tenant, payment_id, psp_reference="PSPAUTH0003")
    await wait_for_notifications(checkout, tenant, payment_id, 1)
    # when a CANCELLATION names another merchant reference and the payment as original
    await notify(
        checkout,
        tenant,
        payment_id,
        event_code="CANCELLATION",
        psp_reference="PSPCANC0003",
        merchant_reference="cancel_0003",
        original_reference="PSPAUTH0003",
    )
    # then it is found by the PSP's reference of the authorisation, and applied
    payment = await wait_for_notifications(checkout, tenant, payment_id, 2)
    last = payment["timeline"][-1]
    assert last["detail"]["event_code"] == "CANCELLATION"
    assert last["detail"]["original_reference"] == "PSPAUTH0003"
    assert (last["status_from"], last["status_to"]) == ("AUTHORIZED", "CANCELLED")
    assert payment["status"] == "CANCELLED"


async def test_a_capture_or_refund_notification_is_not_checkouts_to_receive(checkout):
    # given an authorised payment
    tenant = await checkout.new_tenant()
    payment_id = await pending_payment(checkout, tenant)
    await notify(checkout, tenant, payment_id, psp_reference="PSPAUTH0004")
    await wait_for_notifications(checkout, tenant, payment_id, 1)
    # when the PSP's CAPTURE and REFUND arrive (published as webhooks does, under their
    # codes), then a notification checkout records
    for code in ("CAPTURE", "REFUND"):
        await notify(
            checkout, tenant, payment_id, event_code=code, original_reference="PSPAUTH0004"
        )
    await notify(checkout, tenant, payment_id, event_code="PENDING")
    # then only the last reaches the payment's timeline: the capture service applies the others
    await wait_for_notifications(checkout, tenant, payment_id, 2)
    await asyncio.sleep(0.5)  # anything extra would arrive now
    payment = await admin_payment(checkout, tenant, payment_id)
    codes = [e["detail"]["event_code"] for e in payment["timeline"] if "event_code" in e["detail"]]
    assert codes == ["AUTHORISATION", "PENDING"]
