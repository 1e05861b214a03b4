"""Refunds over HTTP and AMQP against the real capture service, the PSP sandbox (its REFUND
webhooks through the forwarder) and a test standing in for the payouts service, which
answers `refund.requested` with `refund.funds_reserved` / `.funds_refused` on the broker."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aio_pika
import pytest

from common.events import Envelope, RefundFundsDecision
from common.testing.waiting import eventually


async def refund(capture, tenant, payment, body=None, *, key=None, api_key=None):
    return await capture.call(
        "POST",
        f"/v1/admin/payments/{payment.id}/refunds",
        api_key or tenant.operator_key,
        json=body,
        idempotency_key=key or uuid.uuid4().hex,
    )


async def refunds_of(capture, tenant, payment, api_key=None) -> list[dict[str, Any]]:
    status, body = await capture.call(
        "GET", f"/v1/admin/payments/{payment.id}/refunds", api_key or tenant.operator_key
    )
    assert status == 200, body
    found: list[dict[str, Any]] = body["data"]["refunds"]
    return found


async def fund(capture, tenant, refund_view, *, reserved=True, paid_out=False, code=None):
    """What the payouts service does with a refund.requested that asks for a funds check."""
    await capture.publish(
        "refund.funds_reserved" if reserved else "refund.funds_refused",
        RefundFundsDecision(
            refund_id=refund_view["id"],
            payment_id=refund_view["payment_id"],
            supplier_id=refund_view["supplier_id"],
            supplier_amount={
                "value": next(
                    x["amount"] for x in refund_view["lines"] if x["party"] == "SUPPLIER"
                ),
                "currency": "EUR",
            },
            supplier_share_paid_out=paid_out,
            code=code,
        ),
        tenant.id,
    )


async def until_status(capture, tenant, payment, statuses, within=20):
    found: list[dict[str, Any]] = []

    async def reached() -> bool:
        found[:] = await refunds_of(capture, tenant, payment)
        return [r["status"] for r in found] == statuses

    await eventually(reached, within=within)
    return found


async def psp_refund_requests(capture, tenant) -> list[dict[str, Any]]:
    requests = await capture.sandbox.get(
        f"/sandbox/merchant-accounts/{tenant.merchant_account}/requests"
    )
    return [r for r in requests["data"] if r["path"].endswith("/refunds")]


async def captured(capture, amounts=(10000,), **tenant_args):
    tenant = await capture.new_tenant(**tenant_args)
    payment = await capture.authorise(tenant, list(amounts))
    status, body = await capture.capture_now(tenant, payment)
    assert status == 202, body
    await capture.until_captured(tenant, payment, count=len(amounts))
    return tenant, payment


async def test_a_partial_refund_waits_for_funds_goes_to_the_psp_with_its_split_and_is_confirmed(
    capture,
):
    # given 999 at 2.5 % / 10 %: captured 25 / 100 / 874
    tenant, payment = await captured(capture, [999])
    # when
    status, body = await refund(
        capture, tenant, payment, {"amount": {"value": 500, "currency": "EUR"}}
    )
    # then it is reserved, waits for the payouts service's answer, nothing at the PSP yet
    assert status == 201, body
    [created] = body["data"]["refunds"]
    assert created["status"] == "AWAITING_FUNDS"
    assert created["funds_check"] is True
    assert [(x["party"], x["amount"]) for x in created["lines"]] == [
        ("PLATFORM", 13),
        ("MARKETPLACE", 50),
        ("SUPPLIER", 437),
    ]
    [requested] = await capture.events("refund.requested", payment)
    assert requested["funds_check"] is True
    assert requested["amount"]["value"] == 500
    assert await psp_refund_requests(capture, tenant) == []
    # when payouts reserves the funds (the supplier's share was already paid out)
    await fund(capture, tenant, created, paid_out=True)
    # then the PSP gets the refund with its split and the REFUND webhook confirms it
    [done] = await until_status(capture, tenant, payment, ["REFUNDED"])
    assert done["supplier_share_paid_out"] is True
    [sent] = await psp_refund_requests(capture, tenant)
    assert sent["idempotencyKey"] == f"refund:{created['id']}"
    held = await capture.sandbox.get(f"/sandbox/payments/{payment.psp_reference}")
    [modification] = [m for m in held["modifications"] if m["kind"] == "refund"]
    assert modification["reference"] == created["id"]
    assert [
        (s["type"], s["amount"]["value"], s.get("account")) for s in modification["splits"]
    ] == [
        ("Commission", 13, None),
        ("BalanceAccount", 50, f"MKT-{tenant.id}"),
        ("BalanceAccount", 437, f"SUP-{tenant.suppliers[0]}"),
    ]
    [succeeded] = await capture.events("refund.succeeded", payment)
    assert succeeded["payment_refunded"]["value"] == 500
    assert succeeded["payment_captured"]["value"] == 999
    moves = [
        (h["status_from"], h["status_to"])
        for h in done["history"]
        if h["status_from"] != h["status_to"]
    ]
    assert moves == [
        (None, "AWAITING_FUNDS"),
        ("AWAITING_FUNDS", "WAITING_REFUND"),
        ("WAITING_REFUND", "REFUNDED"),
    ]
    # and the rest, with no amount, is exactly what is left: 12 / 50 / 437
    status, body = await refund(capture, tenant, payment)
    assert status == 201, body
    [rest] = body["data"]["refunds"]
    assert [x["amount"] for x in rest["lines"]] == [12, 50, 437]


async def test_funds_refused_fails_the_refund_and_releases_it(capture):
    tenant, payment = await captured(capture, [1000])
    status, body = await refund(capture, tenant, payment)
    [created] = body["data"]["refunds"]
    await fund(capture, tenant, created, reserved=False, code="insufficient_supplier_balance")
    [failed] = await until_status(capture, tenant, payment, ["FAILED"])
    assert failed["failure_code"] == "insufficient_supplier_balance"
    assert await psp_refund_requests(capture, tenant) == []
    [event] = await capture.events("refund.failed", payment)
    assert event["code"] == "insufficient_supplier_balance"
    # the amount is refundable again
    status, body = await refund(capture, tenant, payment)
    assert status == 201, body


async def test_fifty_concurrent_thirty_percent_refunds_three_win_three_reach_the_psp(capture):
    # given a captured 10000 and a tenant whose marketplace covers (no funds check)
    tenant, payment = await captured(capture, [10000])
    async with capture.main.pool.acquire() as conn:
        await conn.execute(
            "UPDATE replica_tenants SET data = jsonb_set(data, '{funding_policy}',"
            " '\"MARKETPLACE_COVERS\"') WHERE tenant_id = $1",
            tenant.id,
        )
    body = {"amount": {"value": 3000, "currency": "EUR"}}
    # when 50 refunds of 30 % race, each with its own Idempotency-Key
    results = await asyncio.gather(*(refund(capture, tenant, payment, body) for _ in range(50)))
    # then exactly 3 succeed, the 47 others get a clear 4xx
    statuses = [s for s, _ in results]
    assert statuses.count(201) == 3, statuses
    refused = [b["error"] for s, b in results if s != 201]
    assert len(refused) == 47
    assert {(e["code"], e["param"]) for e in refused} == {
        ("refund_exceeds_amount_available", "amount.value")
    }
    assert all(s == 422 for s in statuses if s != 201)
    # and the PSP receives exactly 3 refund requests, all confirmed
    await until_status(capture, tenant, payment, ["REFUNDED"] * 3)
    sent = await psp_refund_requests(capture, tenant)
    assert len(sent) == 3
    held = await capture.sandbox.get(f"/sandbox/payments/{payment.psp_reference}")
    assert held["refunded"] == 9000


async def test_refund_failed_restores_the_refundable_amount(capture):
    tenant, payment = await captured(capture, [5000])
    await capture.sandbox.faults(tenant.merchant_account, fail_refunds=True)
    status, body = await refund(capture, tenant, payment)
    [created] = body["data"]["refunds"]
    await fund(capture, tenant, created)
    [failed] = await until_status(capture, tenant, payment, ["FAILED"])
    assert failed["failure_code"] == "refund_failed"
    # when the PSP works again, a new refund of everything succeeds
    await capture.sandbox.faults(tenant.merchant_account, fail_refunds=False)
    status, body = await refund(capture, tenant, payment)
    assert status == 201, body
    assert body["data"]["refunds"][0]["amount"]["value"] == 5000
    await fund(capture, tenant, body["data"]["refunds"][0])
    await until_status(capture, tenant, payment, ["FAILED", "REFUNDED"])


async def test_duplicated_and_reordered_refund_webhooks_change_nothing_twice(capture):
    tenant, payment = await captured(capture, [2000])
    await capture.sandbox.faults(
        tenant.merchant_account, duplicate_webhooks=True, reorder_webhooks=True
    )
    ids = []
    for value in (500, 700):
        status, body = await refund(
            capture, tenant, payment, {"amount": {"value": value, "currency": "EUR"}}
        )
        assert status == 201, body
        ids.append(body["data"]["refunds"][0])
        await fund(capture, tenant, body["data"]["refunds"][0])
    await until_status(capture, tenant, payment, ["REFUNDED", "REFUNDED"])
    await asyncio.sleep(1)  # the duplicates arrive too
    succeeded = await capture.events("refund.succeeded", payment)
    assert sorted(e["amount"]["value"] for e in succeeded) == [500, 700]


async def test_refund_per_logistic_order_and_multi_capture_rules(capture):
    tenant, payment = await captured(capture, [6000, 4000])
    # an amount without a logistic order, two captures with something left: refused
    status, body = await refund(
        capture, tenant, payment, {"amount": {"value": 100, "currency": "EUR"}}
    )
    assert (status, body["error"]["code"], body["error"]["param"]) == (
        422,
        "logistic_order_id_required",
        "logistic_order_id",
    )
    # one supplier's line
    status, body = await refund(
        capture,
        tenant,
        payment,
        {"amount": {"value": 1000, "currency": "EUR"}, "logistic_order_id": "lo_2"},
    )
    assert status == 201, body
    assert body["data"]["refunds"][0]["supplier_id"] == tenant.suppliers[1]
    # no amount, no logistic order: one refund per capture, of what each has left
    status, body = await refund(capture, tenant, payment)
    assert status == 201, body
    assert sorted(r["amount"]["value"] for r in body["data"]["refunds"]) == [3000, 6000]
    # a supplier key sees only its own line's refunds, and only its own split line
    mine = await refunds_of(capture, tenant, payment, tenant.supplier_keys[tenant.suppliers[1]])
    assert {r["logistic_order_id"] for r in mine} == {"lo_2"}
    assert all([x["party"] for x in r["lines"]] == ["SUPPLIER"] for r in mine)
    # the detail: a supplier sees only its own refunds, another tenant none
    other_supplier = tenant.supplier_keys[tenant.suppliers[0]]
    status, _ = await capture.call("GET", f"/v1/admin/refunds/{mine[0]['id']}", other_supplier)
    assert status == 404
    stranger = await capture.new_tenant()
    status, _ = await capture.call(
        "GET", f"/v1/admin/refunds/{mine[0]['id']}", stranger.operator_key
    )
    assert status == 404
    status, detail = await capture.call(
        "GET", f"/v1/admin/refunds/{mine[0]['id']}", tenant.operator_key
    )
    assert status == 200
    assert [x["party"] for x in detail["data"]["lines"]] == ["PLATFORM", "MARKETPLACE", "SUPPLIER"]
    assert detail["data"]["history"][0]["status_to"] == "AWAITING_FUNDS"
    # the same Idempotency-Key replays the first answer
    key = uuid.uuid4().hex
    first = await refund(capture, tenant, payment, key=key)
    again = await refund(capture, tenant, payment, key=key)
    assert first == again


async def test_bad_input_is_refused_and_nothing_reaches_the_psp(capture):
    tenant, payment = await captured(capture, [3000])
    other = await capture.new_tenant()
    authorised_only = await capture.authorise(tenant, [1000])
    cancelled = await capture.authorise(tenant, [1000])
    await capture.report_closed(tenant, cancelled, "CANCELLED")
    refused = await capture.authorise(tenant, [1000], publish_authorised=False)
    await capture.report_closed(tenant, refused, "REFUSED")
    await asyncio.sleep(0.5)
    eur = lambda v: {"amount": {"value": v, "currency": "EUR"}}  # noqa: E731
    cases = [
        (authorised_only, None, tenant.operator_key, 409, "payment_not_captured", "id"),
        (
            payment,
            eur(3001),
            tenant.operator_key,
            422,
            "refund_exceeds_amount_available",
            "amount.value",
        ),
        (payment, eur(0), tenant.operator_key, 422, "amount_invalid", "amount.value"),
        (payment, eur(-1), tenant.operator_key, 422, "parameter_invalid", "amount.value"),
        (
            payment,
            {"amount": {"value": 10, "currency": "USD"}},
            tenant.operator_key,
            422,
            "currency_mismatch",
            "amount.currency",
        ),
        (
            payment,
            {"amount": {"value": 10, "currency": "ZZZ"}},
            tenant.operator_key,
            422,
            None,
            "amount.currency",
        ),
        (
            payment,
            {"amount": {"value": 10**30, "currency": "EUR"}},
            tenant.operator_key,
            422,
            "parameter_invalid",
            "amount.value",
        ),
        (
            payment,
            {"logistic_order_id": "lo_9"},
            tenant.operator_key,
            404,
            "logistic_order_unknown",
            "logistic_order_id",
        ),
        (
            payment,
            {"reason": "because"},
            tenant.operator_key,
            422,
            "refund_reason_invalid",
            "reason",
        ),
        (cancelled, None, tenant.operator_key, 409, "payment_not_refundable", "id"),
        (refused, None, tenant.operator_key, 409, "payment_not_refundable", "id"),
        (payment, None, other.operator_key, 404, "payment_not_found", "id"),
        (payment, None, tenant.supplier_keys[tenant.suppliers[0]], 403, None, None),
    ]
    for target, body, key, want_status, want_code, want_param in cases:
        status, answer = await refund(capture, tenant, target, body, api_key=key)
        assert status == want_status, (body, answer)
        error = answer["error"]
        assert error["code"]
        if want_code is not None:
            assert error["code"] == want_code, (body, error)
        if want_param is not None:
            assert (error.get("param") or "").startswith(want_param), (body, error)
    # malformed JSON and a NUL byte
    status, answer = await capture.call(
        "POST",
        f"/v1/admin/payments/{payment.id}/refunds",
        tenant.operator_key,
        data=b"{not json",
        idempotency_key=uuid.uuid4().hex,
    )
    assert status == 400
    assert answer["error"]["code"] == "invalid_json"
    status, answer = await refund(capture, tenant, payment, {"description": "a\u0000b"})
    assert 400 <= status < 500, answer
    # another tenant sees no refunds of it
    status, answer = await capture.call(
        "GET", f"/v1/admin/payments/{payment.id}/refunds", other.operator_key
    )
    assert status == 404
    assert await psp_refund_requests(capture, tenant) == []
    assert await capture.events("refund.requested", payment) == []


@pytest.mark.parametrize(
    "capture", [{"unconfirmed_after_s": 0.5, "unconfirmed_check_interval_s": 0.2}], indirect=True
)
async def test_a_refund_the_psp_never_confirms_enters_the_queue_and_is_retried_same_key(capture):
    tenant, payment = await captured(capture, [1500])
    await capture.sandbox.faults(tenant.merchant_account, drop_webhooks=True)
    status, body = await refund(capture, tenant, payment)
    [created] = body["data"]["refunds"]
    await fund(capture, tenant, created)
    found: list[dict[str, Any]] = []

    async def flagged() -> bool:
        _status, body = await capture.call(
            "GET", f"/v1/admin/refund-interventions?payment_id={payment.id}", tenant.operator_key
        )
        found[:] = [i for i in body["data"] if i["kind"] == "unconfirmed"]
        return bool(found)

    await eventually(flagged, within=20)
    assert found[0]["code"] == "refund_unconfirmed"
    assert found[0]["refund_id"] == created["id"]
    [refund_now] = await refunds_of(capture, tenant, payment)
    assert refund_now["status"] == "WAITING_REFUND"  # never failed by guess
    # when the operator retries it: the same PSP key again, which the PSP answers as before
    status, body = await capture.call(
        "POST",
        f"/v1/admin/refund-interventions/{found[0]['id']}/retry",
        tenant.operator_key,
        idempotency_key=uuid.uuid4().hex,
    )
    assert status == 202, body
    assert body["data"]["status"] == "RETRIED"

    async def resent() -> bool:
        return len(await psp_refund_requests(capture, tenant)) == 2

    await eventually(resent, within=20)
    sent = await psp_refund_requests(capture, tenant)
    assert {r["idempotencyKey"] for r in sent} == {f"refund:{created['id']}"}
    # and when the PSP's confirmation finally arrives, the refund is done, once
    await capture.sandbox.faults(tenant.merchant_account)
    await capture.http.post(
        f"{capture.sandbox.url}/sandbox/merchant-accounts/{tenant.merchant_account}"
        "/webhooks/release-dropped"
    )
    await until_status(capture, tenant, payment, ["REFUNDED"])
    held = await capture.sandbox.get(f"/sandbox/payments/{payment.psp_reference}")
    assert held["refunded"] == 1500


@pytest.mark.parametrize(
    "capture",
    [{"unconfirmed_after_s": 0.5, "unconfirmed_check_interval_s": 0.2}],
    indirect=True,
)
async def test_a_capture_the_psp_never_confirms_enters_the_queue_and_is_resolved_with_a_note(
    capture,
):
    tenant = await capture.new_tenant()
    payment = await capture.authorise(tenant, [800])
    await capture.sandbox.faults(tenant.merchant_account, drop_next_webhooks=1)
    status, body = await capture.capture_now(tenant, payment)
    assert status == 202, body
    await capture.until_captured(tenant, payment, status="SENT")
    found: list[dict[str, Any]] = []

    async def flagged() -> bool:
        _, body = await capture.call(
            "GET", f"/v1/admin/interventions?payment_id={payment.id}", tenant.operator_key
        )
        found[:] = [i for i in body["data"] if i["kind"] == "unconfirmed" and i["status"] == "OPEN"]
        return bool(found)

    await eventually(flagged, within=20)
    assert found[0]["code"] == "capture_unconfirmed"
    [still] = await capture.captures(tenant, payment)
    assert still["status"] == "SENT"  # never failed by guess
    # the operator sends it again: the same PSP key, answered as the first time
    status, body = await capture.call(
        "POST",
        f"/v1/admin/interventions/{found[0]['id']}/resend",
        tenant.operator_key,
        idempotency_key=uuid.uuid4().hex,
    )
    assert status == 202, body
    assert body["data"]["status"] == "RETRIED"
    sent = await capture.psp_capture_requests(tenant)
    assert len(sent) == 2
    assert len({r["idempotencyKey"] for r in sent}) == 1
    assert len(await capture.psp_captures(payment)) == 1  # captured once at the PSP
    # still unconfirmed: it is flagged again, and the operator resolves it with a note
    await eventually(flagged, within=20)
    status, body = await capture.call(
        "POST",
        f"/v1/admin/interventions/{found[0]['id']}/resolve",
        tenant.operator_key,
        json={"note": "confirmed in the PSP's back office"},
        idempotency_key=uuid.uuid4().hex,
    )
    assert status == 200, body
    assert body["data"]["status"] == "RESOLVED"
    assert body["data"]["note"] == "confirmed in the PSP's back office"


@pytest.mark.parametrize(
    "capture",
    [{"unconfirmed_after_s": 0.5, "unconfirmed_check_interval_s": 0.2}],
    indirect=True,
)
async def test_a_late_capture_webhook_closes_its_unconfirmed_intervention(capture):
    tenant = await capture.new_tenant()
    payment = await capture.authorise(tenant, [900])
    await capture.sandbox.faults(tenant.merchant_account, drop_next_webhooks=1)
    await capture.capture_now(tenant, payment)
    await capture.until_captured(tenant, payment, status="SENT")

    async def listed(status: str) -> bool:
        _, body = await capture.call(
            "GET", f"/v1/admin/interventions?payment_id={payment.id}", tenant.operator_key
        )
        return [i["status"] for i in body["data"] if i["kind"] == "unconfirmed"] == [status]

    await eventually(lambda: listed("OPEN"), within=20)
    # when the PSP's CAPTURE finally arrives
    await capture.http.post(
        f"{capture.sandbox.url}/sandbox/merchant-accounts/{tenant.merchant_account}"
        "/webhooks/release-dropped"
    )
    await capture.until_captured(tenant, payment)
    # then the intervention closes by itself
    await eventually(lambda: listed("RESOLVED"), within=20)


async def dispute(capture, tenant, payment, stage, amount=None):
    body: dict[str, Any] = {"psp_reference": payment.psp_reference, "stage": stage}
    if amount is not None:
        body["amount"] = amount
    async with capture.http.post(
        f"{capture.sandbox.url}/sandbox/merchant-accounts/{tenant.merchant_account}/chargebacks",
        json=body,
    ) as response:
        assert response.status == 201, await response.text()


async def chargeback_events(capture, payment, kind="chargeback.received"):
    return await capture.events(kind, payment)


async def test_a_chargeback_after_a_partial_refund_takes_only_what_is_left_by_the_frozen_split(
    capture,
):
    # given 10000 at 2.5 % / 10 %, 3000 refunded
    tenant, payment = await captured(capture, [10000])
    status, body = await refund(
        capture, tenant, payment, {"amount": {"value": 3000, "currency": "EUR"}}
    )
    await fund(capture, tenant, body["data"]["refunds"][0])
    await until_status(capture, tenant, payment, ["REFUNDED"])
    # when the dispute is notified, then charged back for the full amount
    await dispute(capture, tenant, payment, "NOTIFICATION_OF_CHARGEBACK")

    async def disputed() -> bool:
        async with capture.main.pool.acquire() as conn:
            return bool(
                await conn.fetchval("SELECT true FROM disputes WHERE payment_id = $1", payment.id)
            )

    await eventually(disputed, within=20)
    status, body = await refund(capture, tenant, payment)
    assert (status, body["error"]["code"]) == (409, "payment_disputed")
    await dispute(capture, tenant, payment, "CHARGEBACK", amount=10000)

    async def charged() -> bool:
        return bool(await chargeback_events(capture, payment))

    await eventually(charged, within=20)
    # then it takes the 7000 left, each party what it still kept
    [event] = await chargeback_events(capture, payment)
    assert event["amount"]["value"] == 7000
    assert [(x["party"], x["amount"]) for x in event["lines"]] == [
        ("PLATFORM", 175),
        ("MARKETPLACE", 700),
        ("SUPPLIER", 6125),
    ]
    # and a refund is refused after it
    status, body = await refund(capture, tenant, payment)
    assert (status, body["error"]["code"]) == (409, "payment_charged_back")
    # a notification that would move the dispute back is recorded and ignored
    await dispute(capture, tenant, payment, "NOTIFICATION_OF_CHARGEBACK")

    async def recorded() -> bool:
        async with capture.main.pool.acquire() as conn:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) FROM dispute_notifications n JOIN disputes d"
                    " ON d.id = n.dispute_id WHERE d.payment_id = $1 AND NOT n.applied",
                    payment.id,
                )
            )

    await eventually(recorded, within=20)
    status, body = await refund(capture, tenant, payment)
    assert body["error"]["code"] == "payment_charged_back"
    # the reversal gives back exactly what was taken, and refunds are possible again
    await dispute(capture, tenant, payment, "CHARGEBACK_REVERSED")

    async def reversed_() -> bool:
        return bool(await chargeback_events(capture, payment, "chargeback.reversed"))

    await eventually(reversed_, within=20)
    [back] = await chargeback_events(capture, payment, "chargeback.reversed")
    assert back["lines"] == event["lines"]
    status, body = await refund(capture, tenant, payment)
    assert status == 201, body
    assert body["data"]["refunds"][0]["amount"]["value"] == 7000


async def test_a_refund_racing_a_chargeback_never_takes_more_than_was_captured(capture):
    for _ in range(3):
        tenant, payment = await captured(capture, [4000])
        # when a full refund (awaiting payouts' funds) and a full chargeback race
        refunding = asyncio.create_task(refund(capture, tenant, payment))
        await dispute(capture, tenant, payment, "CHARGEBACK", amount=4000)
        status, body = await refunding

        async def settled(payment=payment) -> bool:
            return bool(await chargeback_events(capture, payment))

        await eventually(settled, within=20)
        # then the chargeback takes the whole 4000 either way: the refund was refused, or it
        # was reserved first and the chargeback failed it before it reached the PSP
        [event] = await chargeback_events(capture, payment)
        assert event["amount"]["value"] == 4000
        if status == 201:
            [failed] = await refunds_of(capture, tenant, payment)
            assert (failed["status"], failed["failure_code"]) == ("FAILED", "payment_charged_back")
        else:
            assert (status, body["error"]["code"]) == (409, "payment_charged_back")
        assert await psp_refund_requests(capture, tenant) == []


async def marketplace_covers(capture, tenant) -> None:
    async with capture.main.pool.acquire() as conn:
        await conn.execute(
            "UPDATE replica_tenants SET data = jsonb_set(data, '{funding_policy}',"
            " '\"MARKETPLACE_COVERS\"') WHERE tenant_id = $1",
            tenant.id,
        )


async def test_a_refund_at_the_psp_that_fails_after_a_chargeback_is_charged_back_too(capture):
    # given a refund of 1000 taken by the PSP, its outcome not known yet (webhook held back)
    tenant, payment = await captured(capture, [4000])
    await marketplace_covers(capture, tenant)
    await capture.sandbox.faults(tenant.merchant_account, fail_refunds=True, drop_next_webhooks=1)
    status, body = await refund(
        capture, tenant, payment, {"amount": {"value": 1000, "currency": "EUR"}}
    )
    assert status == 201, body

    async def at_psp() -> bool:
        [r] = await refunds_of(capture, tenant, payment)
        return r["psp_request"] == "RECEIVED"

    await eventually(at_psp, within=20)
    # when the chargeback comes (taking what the refund left: 3000), then the REFUND_FAILED
    await capture.sandbox.faults(tenant.merchant_account)
    await dispute(capture, tenant, payment, "CHARGEBACK", amount=4000)

    async def first() -> bool:
        return len(await chargeback_events(capture, payment)) == 1

    await eventually(first, within=20)
    await capture.http.post(
        f"{capture.sandbox.url}/sandbox/merchant-accounts/{tenant.merchant_account}"
        "/webhooks/release-dropped"
    )
    await until_status(capture, tenant, payment, ["FAILED"])

    async def both() -> bool:
        return len(await chargeback_events(capture, payment)) == 2

    await eventually(both, within=20)
    # then the chargeback took 3000 and then the 1000 the failed refund released: 4000 in all,
    # each party exactly what it received
    events = await chargeback_events(capture, payment)
    assert [e["amount"]["value"] for e in events] == [3000, 1000]
    taken: dict[str, int] = {}
    for e in events:
        for line in e["lines"]:
            taken[line["party"]] = taken.get(line["party"], 0) + line["amount"]
    assert taken == {"PLATFORM": 100, "MARKETPLACE": 400, "SUPPLIER": 3500}


@pytest.mark.parametrize(
    "capture",
    [{"unconfirmed_after_s": 0.5, "unconfirmed_check_interval_s": 0.2}],
    indirect=True,
)
async def test_a_refund_payouts_never_answers_enters_the_queue_still_reserved(capture):
    tenant, payment = await captured(capture, [1200])
    status, body = await refund(capture, tenant, payment)
    assert status == 201, body
    found: list[dict[str, Any]] = []

    async def flagged() -> bool:
        _, body = await capture.call(
            "GET", f"/v1/admin/refund-interventions?payment_id={payment.id}", tenant.operator_key
        )
        found[:] = body["data"]
        return bool(found)

    await eventually(flagged, within=20)
    assert (found[0]["kind"], found[0]["code"]) == ("unconfirmed", "refund_unconfirmed")
    # still reserved: nothing more can be refunded, and nothing went to the PSP
    status, body = await refund(capture, tenant, payment)
    assert (status, body["error"]["code"]) == (409, "payment_fully_refunded")
    assert await psp_refund_requests(capture, tenant) == []


async def test_a_malformed_funds_decision_is_parked_with_its_reason(capture):
    # given a refund awaiting funds
    tenant, payment = await captured(capture, [700])
    _status, body = await refund(capture, tenant, payment)
    [created] = body["data"]["refunds"]
    # when payouts sends a decision without its required fields, then a good one
    bad = Envelope(
        type="refund.funds_reserved",
        tenant_id=tenant.id,
        correlation_id="test",
        data={"refund_id": created["id"], "supplier_share_paid_out": "maybe"},
    )
    connection = await aio_pika.connect(capture.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(capture.exchange_name)
        await exchange.publish(
            aio_pika.Message(
                bad.model_dump_json().encode(),
                message_id=str(bad.id),
                content_type="application/json",
            ),
            routing_key="refund.funds_reserved",
        )
    await fund(capture, tenant, created)
    # then the good one applies, and the bad one waits in the DLQ with the reason
    await until_status(capture, tenant, payment, ["REFUNDED"])
    parked: list[tuple[bytes, dict[str, Any]]] = []

    async def all_parked() -> bool:
        parked.extend(await capture.dead_letters("capture.refund-funds"))
        return len(parked) == 1

    await eventually(all_parked)
    assert parked[0][1]["x-error-kind"] == "poison"
    assert "refund.funds_reserved payload invalid" in parked[0][1]["x-error"]


async def test_without_funds_check_a_later_decision_still_records_the_paid_out_share(capture):
    # given a tenant whose marketplace covers: the refund goes to the PSP at once
    tenant, payment = await captured(capture, [2500])
    await marketplace_covers(capture, tenant)
    _status, body = await refund(capture, tenant, payment)
    [created] = body["data"]["refunds"]
    assert created["funds_check"] is False
    [done] = await until_status(capture, tenant, payment, ["REFUNDED"])
    assert done["supplier_share_paid_out"] is None
    # when payouts reports that the supplier's share had been paid out already
    await fund(capture, tenant, created, paid_out=True)

    async def recorded() -> bool:
        [now] = await refunds_of(capture, tenant, payment)
        return now["supplier_share_paid_out"] is True

    await eventually(recorded)
    [now] = await refunds_of(capture, tenant, payment)
    assert now["status"] == "REFUNDED"
    assert len(await psp_refund_requests(capture, tenant)) == 1


@pytest.mark.parametrize("capture", [{"proxied": True, "psp_timeout_s": 2.5}], indirect=True)
async def test_a_replica_that_dies_after_the_psp_refunded_leaves_one_refund(capture):
    # given a captured payment on replica A (cut off from PostgreSQL on demand, waiting up to
    # 2.5 s for the PSP) and a PSP that takes 1.5 s per call and confirms late
    a = capture.main
    tenant, payment = await captured(capture, [10000])
    async with a.pool.acquire() as conn:
        await conn.execute(
            "UPDATE replica_tenants SET data = jsonb_set(data, '{funding_policy}',"
            " '\"MARKETPLACE_COVERS\"') WHERE tenant_id = $1",
            tenant.id,
        )
    await capture.sandbox.faults(tenant.merchant_account, latency_ms=1500, webhook_delay_ms=4000)
    status, body = await refund(
        capture, tenant, payment, {"amount": {"value": 4000, "currency": "EUR"}}
    )
    assert status == 201, body
    [created] = body["data"]["refunds"]

    async def psp_holds_the_call() -> bool:
        return len(await psp_refund_requests(capture, tenant)) == 1

    await eventually(psp_holds_the_call)
    # when A loses its database while the PSP refunds (A gets the answer but cannot record
    # it), then is stopped for good
    await a.proxy.sever()
    b = await capture.start()
    await capture.sandbox.faults(tenant.merchant_account, webhook_delay_ms=4000)
    await a.stop()

    # then B, once A's lease expired, sends the same request again under the same key: the PSP
    # answers it with its first answer, and one refund was made
    async def resent() -> bool:
        return len(await psp_refund_requests(capture, tenant)) == 2

    await eventually(resent, within=15)
    first, second = await psp_refund_requests(capture, tenant)
    assert first["idempotencyKey"] == second["idempotencyKey"] == f"refund:{created['id']}"
    assert second.get("replayed") is True

    async def refunded() -> bool:
        status, body = await capture.call(
            "GET", f"/v1/admin/refunds/{created['id']}", tenant.operator_key, url=b.url
        )
        assert status == 200, body
        return bool(body["data"]["status"] == "REFUNDED")

    await eventually(refunded, within=20)
    held = await capture.sandbox.get(f"/sandbox/payments/{payment.psp_reference}")
    assert held["refunded"] == 4000
    assert len([m for m in held["modifications"] if m["kind"] == "refund"]) == 1
