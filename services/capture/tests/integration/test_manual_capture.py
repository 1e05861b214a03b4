"""ADM-PAY-101: an operator captures a payment's lines; the PSP confirms by webhook."""

import uuid


async def test_an_operator_captures_an_authorised_payment_and_the_psp_confirms_it(capture):
    # given
    tenant = await capture.new_tenant(capture_mode="MANUAL")
    payment = await capture.authorise(tenant, [10000])
    # when
    status, body = await capture.capture_now(tenant, payment)
    # then
    assert status == 202, body
    [created] = body["data"]["captures"]
    assert (created["status"], created["trigger"]) == ("PENDING", "MANUAL")
    assert [(s["party"], s["amount"], s["rate"]) for s in created["splits"]] == [
        ("PLATFORM", 250, "2.5"),
        ("MARKETPLACE", 1000, "10"),
        ("SUPPLIER", 8750, None),
    ]
    [done] = await capture.until_captured(tenant, payment)
    assert done["psp_reference"]
    [sent] = await capture.psp_captures(payment)
    assert sent["amount"] == {"value": 10000, "currency": "EUR"}
    assert sent["idempotencyKey"] == f"capture:{created['id']}:1"
    assert sent["reference"] == created["id"]
    assert [(s["type"], s["amount"]["value"], s.get("account")) for s in sent["splits"]] == [
        ("Commission", 250, None),
        ("BalanceAccount", 1000, f"MKT-{tenant.id}"),
        ("BalanceAccount", 8750, f"SUP-{tenant.suppliers[0]}"),
    ]
    [succeeded] = await capture.events("capture.succeeded", payment)
    assert succeeded["capture_id"] == created["id"]
    assert succeeded["psp_reference"] == done["psp_reference"]
    assert [s["amount"] for s in succeeded["splits"]] == [250, 1000, 8750]
    assert (succeeded["platform_rate"], succeeded["marketplace_rate"]) == ("2.5", "10")


async def test_the_capture_detail_shows_attempts_and_history(capture):
    # given
    tenant = await capture.new_tenant()
    payment = await capture.authorise(tenant, [999])
    status, body = await capture.capture_now(tenant, payment, key=uuid.uuid4().hex)
    assert status == 202, body
    capture_id = body["data"]["captures"][0]["id"]
    await capture.until_captured(tenant, payment)
    # when
    status, body = await capture.call(
        "GET", f"/v1/admin/captures/{capture_id}", tenant.operator_key
    )
    # then
    assert status == 200, body
    detail = body["data"]
    assert [s["amount"] for s in detail["splits"]] == [25, 100, 874]
    assert [a["outcome"] for a in detail["attempts"]] == ["received"]
    assert detail["attempts"][0]["idempotency_key"] == f"capture:{capture_id}:1"
    moves = [
        (h["status_from"], h["status_to"])
        for h in detail["history"]
        if h["status_from"] != h["status_to"]
    ]
    # the CAPTURE webhook may overtake the record of the PSP's answer; either way:
    assert moves in (
        [(None, "PENDING"), ("PENDING", "SENT"), ("SENT", "SUCCEEDED")],
        [(None, "PENDING"), ("PENDING", "SUCCEEDED")],
    )
