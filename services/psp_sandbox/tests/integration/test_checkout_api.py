from __future__ import annotations

import logging
import time
from typing import Any

import aiohttp
import pytest

from common.logging import configure_logging
from common.psp.hmac import verify_signature
from psp_sandbox.domain import TEST_CARDS, encode_three_ds_result
from psp_sandbox.testing import Receiver, Sandbox, webhook_receiver


def card_method(
    number: str, month: str = "03", year: str = "2030", cvc: str | None = "737"
) -> dict[str, Any]:
    method = {
        "type": "scheme",
        "encryptedCardNumber": f"test_{number}",
        "encryptedExpiryMonth": f"test_{month}",
        "encryptedExpiryYear": f"test_{year}",
    }
    if cvc is not None:
        method["encryptedSecurityCode"] = f"test_{cvc}"
    return method


def payment_body(
    account: dict[str, Any], number: str = "4242424242424242", **more: Any
) -> dict[str, Any]:
    return {
        "merchantAccount": account["merchant_account"],
        "reference": "order-1",
        "amount": {"value": 10000, "currency": "EUR"},
        "paymentMethod": card_method(number),
        "returnUrl": "https://shop.example/return",
        **more,
    }


async def post(
    sandbox: Sandbox,
    path: str,
    body: dict[str, Any],
    account: dict[str, Any] | None,
    key: str | None = None,
    version: str = "v71",
) -> tuple[int, dict[str, Any]]:
    headers = {}
    if account is not None:
        headers["X-API-Key"] = account["api_key"]
    if key is not None:
        headers["Idempotency-Key"] = key
    async with sandbox.http.post(
        f"{sandbox.url}/{version}{path}", json=body, headers=headers
    ) as response:
        return response.status, await response.json()


async def test_infrastructure_routes(sandbox: Sandbox) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        async with sandbox.http.get(sandbox.url + path) as response:
            assert response.status == 200
    spec = await sandbox.get("/openapi.json")
    assert "/v71/payments" in spec["paths"]
    assert "/v72/payments/{pspReference}/captures" in spec["paths"]


async def test_merchant_account_is_idempotent_and_keys_are_stable(sandbox: Sandbox) -> None:
    first = await sandbox.merchant_account("Shop_A", "http://127.0.0.1:1/a")
    again = await sandbox.merchant_account("Shop_A", "http://127.0.0.1:1/b")
    assert (again["api_key"], again["hmac_key"]) == (first["api_key"], first["hmac_key"])
    assert again["webhook_url"] == "http://127.0.0.1:1/b"
    assert len(first["hmac_key"]) == 64
    int(first["hmac_key"], 16)


async def test_a_merchant_account_signs_with_the_hmac_key_it_was_given(sandbox: Sandbox) -> None:
    # given an HMAC key chosen for the account, then a rotated one
    chosen, rotated = "ab" * 32, "CD" * 32
    async with sandbox.http.post(
        f"{sandbox.url}/sandbox/merchant-accounts",
        json={"merchant_account": "Shop_K", "webhook_url": None, "hmac_key": chosen},
    ) as response:
        first = await response.json()
    async with sandbox.http.post(
        f"{sandbox.url}/sandbox/merchant-accounts",
        json={"merchant_account": "Shop_K", "hmac_key": rotated},
    ) as response:
        second = await response.json()
    async with sandbox.http.post(
        f"{sandbox.url}/sandbox/merchant-accounts",
        json={"merchant_account": "Shop_K", "hmac_key": "not-hex"},
    ) as response:
        refused = response.status
    # then
    assert first["hmac_key"] == chosen.upper()
    assert second["hmac_key"] == rotated.upper()
    assert second["api_key"] == first["api_key"]
    assert refused == 422


async def test_missing_or_unknown_api_key_is_401_in_adyens_shape(
    sandbox: Sandbox, account: dict[str, Any]
) -> None:
    status, body = await post(sandbox, "/payments", payment_body(account), None)
    assert status == 401
    assert body["errorCode"] == "000"
    assert body["errorType"] == "security"
    assert body["status"] == 401
    status, _ = await post(sandbox, "/payments", payment_body(account), {"api_key": "nope"})
    assert status == 401


@pytest.mark.parametrize(
    ("drop", "code"), [("amount", "100"), ("reference", "130"), ("merchantAccount", "901")]
)
async def test_missing_fields_are_adyen_validation_errors(
    sandbox: Sandbox, account: dict[str, Any], drop: str, code: str
) -> None:
    body = payment_body(account)
    del body[drop]
    status, answer = await post(sandbox, "/payments", body, account)
    assert status == 422
    assert answer["errorCode"] == code
    assert answer["errorType"] == "validation"


@pytest.mark.parametrize("card", TEST_CARDS, ids=lambda c: f"{c.number}-{c.description}")
async def test_each_test_card(sandbox: Sandbox, account: dict[str, Any], card: Any) -> None:
    # given
    cvc = "7373" if card.brand == "amex" else "737"
    body = payment_body(account, card.number)
    body["paymentMethod"] = card_method(card.number, cvc=cvc)
    # when
    status, answer = await post(sandbox, "/payments", body, account)
    # then
    assert status == 200
    expected = {
        "authorise": "Authorised",
        "refuse": "Refused",
        "cvc_check": "Refused",
        "challenge": "ChallengeShopper",
        "challenge_fails": "ChallengeShopper",
    }[card.behaviour]
    assert answer["resultCode"] == expected
    assert len(answer["pspReference"]) == 16
    if expected == "Authorised":
        assert answer["amount"] == {"value": 10000, "currency": "EUR"}
        assert answer["merchantReference"] == "order-1"
        assert answer["additionalData"]["cardSummary"] == card.number[-4:]
        assert answer["additionalData"]["paymentMethod"] == card.brand
        commercial = answer["additionalData"]["isCardCommercial"] == "true"
        assert commercial == card.commercial
    if expected == "Refused":
        assert answer["refusalReasonCode"] == (card.refusal.code if card.refusal else "24")
        assert answer["refusalReason"]


async def test_luhn_failure_is_422_invalid_card_number(
    sandbox: Sandbox, account: dict[str, Any]
) -> None:
    status, answer = await post(
        sandbox, "/payments", payment_body(account, "4242424242424241"), account
    )
    assert (status, answer["errorCode"], answer["message"]) == (422, "101", "Invalid card number")


async def test_expired_expiry_date_is_refused(sandbox: Sandbox, account: dict[str, Any]) -> None:
    body = payment_body(account)
    body["paymentMethod"] = card_method("4242424242424242", month="01", year="2020")
    status, answer = await post(sandbox, "/payments", body, account)
    assert status == 200
    assert (answer["resultCode"], answer["refusalReason"], answer["refusalReasonCode"]) == (
        "Refused",
        "Expired Card",
        "6",
    )


@pytest.mark.parametrize(
    ("number", "authenticated", "result"),
    [
        ("4000000000003220", True, "Authorised"),
        ("4000000000003220", False, "Refused"),
        ("4000008400001629", True, "Refused"),
    ],
)
async def test_three_ds_challenge(
    sandbox: Sandbox,
    account: dict[str, Any],
    receiver: Receiver,
    number: str,
    authenticated: bool,
    result: str,
) -> None:
    # given a payment that asks for a challenge
    status, answer = await post(sandbox, "/payments", payment_body(account, number), account, "k1")
    action = answer["action"]
    assert (status, answer["resultCode"]) == (200, "ChallengeShopper")
    assert (action["type"], action["subtype"], action["paymentMethodType"]) == (
        "threeDS2",
        "challenge",
        "scheme",
    )
    assert action["token"]
    assert action["paymentData"]
    async with sandbox.http.get(action["url"]) as page:
        assert page.status == 200
    # when the shopper completes it
    trans_id = action["authorisationToken"]
    details = {"details": {"threeDSResult": encode_three_ds_result(trans_id, authenticated)}}
    status, final = await post(sandbox, "/payments/details", details, account, "k2")
    # then
    assert status == 200
    assert final["resultCode"] == result
    assert final["pspReference"] == answer["pspReference"]
    if result == "Refused":
        assert (final["refusalReason"], final["refusalReasonCode"]) == (
            "3D Not Authenticated",
            "11",
        )
    items = await receiver.wait_for(1)
    assert items[0]["eventCode"] == "AUTHORISATION"
    assert items[0]["success"] == ("true" if result == "Authorised" else "false")


async def test_idempotency_replays_and_refuses_another_body(
    sandbox: Sandbox, account: dict[str, Any], receiver: Receiver
) -> None:
    # given
    body = payment_body(account)
    first_status, first = await post(sandbox, "/payments", body, account, "authorise:pay_1")
    # when
    again_status, again = await post(sandbox, "/payments", body, account, "authorise:pay_1")
    other_status, other = await post(
        sandbox, "/payments", {**body, "reference": "order-2"}, account, "authorise:pay_1"
    )
    # then
    assert (again_status, again) == (first_status, first)
    assert other_status == 422
    assert other["errorCode"] == "704"
    await sandbox.drain_webhooks()
    assert len(receiver.items()) == 1  # one payment, one AUTHORISATION
    too_long_status, _ = await post(sandbox, "/payments", body, account, "k" * 65)
    assert too_long_status == 422


async def test_official_version_v72_is_served_too(
    sandbox: Sandbox, account: dict[str, Any]
) -> None:
    status, answer = await post(sandbox, "/payments", payment_body(account), account, version="v72")
    assert (status, answer["resultCode"]) == (200, "Authorised")
    status, methods = await post(
        sandbox, "/paymentMethods", {"merchantAccount": account["merchant_account"]}, account
    )
    assert status == 200
    assert methods["paymentMethods"][0]["type"] == "scheme"


async def test_tokens_from_the_dropin_pay_and_card_data_is_not_kept(
    sandbox: Sandbox, account: dict[str, Any]
) -> None:
    # given the drop-in tokenised a card
    async with sandbox.http.get(sandbox.url + "/sandbox/dropin.js") as script:
        assert script.status == 200
        assert "PspSandboxDropin" in await script.text()
    async with sandbox.http.options(sandbox.url + "/sandbox/tokenize") as preflight:
        assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    async with sandbox.http.post(
        sandbox.url + "/sandbox/tokenize",
        json={
            "number": "5555 5555 5555 4444",
            "expiry_month": "03",
            "expiry_year": "2030",
            "cvc": "737",
        },
    ) as response:
        tokens = await response.json()
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert tokens["encryptedCardNumber"].startswith("sbx_tok_")
    assert tokens["brand"] == "mc"
    # when
    method = {k: v for k, v in tokens.items() if k != "brand"}
    status, answer = await post(
        sandbox, "/payments", payment_body(account, paymentMethod=method), account
    )
    # then
    assert (status, answer["resultCode"]) == (200, "Authorised")
    assert answer["additionalData"]["paymentMethod"] == "mc"
    stored = await sandbox.get(f"/sandbox/payments/{answer['pspReference']}")
    assert "5555555555554444" not in str(stored)
    assert "encryptedCardNumber" not in stored["request"]["paymentMethod"]


async def test_modifications_and_signed_webhooks(
    sandbox: Sandbox, account: dict[str, Any], receiver: Receiver
) -> None:
    # given an authorised payment with Level 3 data
    additional = {
        "enhancedSchemeData.totalTaxAmount": "1000",
        "enhancedSchemeData.customerReference": "PO-1",
    }
    _, payment = await post(
        sandbox, "/payments", payment_body(account, additionalData=additional), account, "a1"
    )
    ref = payment["pspReference"]
    splits = [
        {"amount": {"value": 250}, "type": "Commission", "reference": "platform"},
        {"amount": {"value": 1000}, "type": "Commission", "reference": "marketplace"},
        {
            "amount": {"value": 8750},
            "type": "BalanceAccount",
            "account": "BA_SUP",
            "reference": "supplier",
        },
    ]
    merchant = account["merchant_account"]
    # when captured, partly refunded twice (the second beyond what is left), and cancelled
    capture_status, capture = await post(
        sandbox,
        f"/payments/{ref}/captures",
        {
            "merchantAccount": merchant,
            "amount": {"value": 10000, "currency": "EUR"},
            "splits": splits,
            "reference": "cap-1",
        },
        account,
        "capture:line_1",
    )
    _, refund = await post(
        sandbox,
        f"/payments/{ref}/refunds",
        {
            "merchantAccount": merchant,
            "amount": {"value": 6000, "currency": "EUR"},
            "reference": "ref-1",
        },
        account,
        "refund:r1",
    )
    _, over = await post(
        sandbox,
        f"/payments/{ref}/refunds",
        {
            "merchantAccount": merchant,
            "amount": {"value": 5000, "currency": "EUR"},
            "reference": "ref-2",
        },
        account,
        "refund:r2",
    )
    _, cancel = await post(
        sandbox, f"/payments/{ref}/cancels", {"merchantAccount": merchant}, account, "cancel:1"
    )
    # then
    assert capture_status == 201
    assert capture["status"] == "received"
    assert capture["paymentPspReference"] == ref
    assert capture["pspReference"] != ref
    assert capture["amount"] == {"value": 10000, "currency": "EUR"}
    assert capture["reference"] == "cap-1"
    items = await receiver.wait_for(5)
    by_psp = {i["pspReference"]: i for i in items}
    assert all(verify_signature(i, [account["hmac_key"]]) for i in items)
    assert by_psp[ref]["eventCode"] == "AUTHORISATION"
    assert (
        by_psp[capture["pspReference"]]["eventCode"],
        by_psp[capture["pspReference"]]["success"],
    ) == ("CAPTURE", "true")
    assert by_psp[capture["pspReference"]]["originalReference"] == ref
    assert by_psp[refund["pspReference"]]["success"] == "true"
    assert (by_psp[over["pspReference"]]["eventCode"], by_psp[over["pspReference"]]["success"]) == (
        "REFUND",
        "false",
    )
    assert (
        by_psp[cancel["pspReference"]]["eventCode"],
        by_psp[cancel["pspReference"]]["success"],
    ) == ("CANCELLATION", "false")
    stored = await sandbox.get(f"/sandbox/payments/{ref}")
    assert stored["additionalData"] == additional
    assert stored["idempotencyKey"] == "a1"
    assert stored["captured"] == 10000
    assert stored["refunded"] == 6000
    assert stored["modifications"][0]["splits"] == splits
    assert stored["modifications"][0]["idempotencyKey"] == "capture:line_1"


async def test_a_capture_whose_splits_do_not_sum_to_its_amount_is_refused(
    sandbox: Sandbox, account: dict[str, Any]
) -> None:
    # given
    _, payment = await post(sandbox, "/payments", payment_body(account), account)
    body = {
        "merchantAccount": account["merchant_account"],
        "amount": {"value": 10000, "currency": "EUR"},
        "splits": [
            {"amount": {"value": 250, "currency": "EUR"}, "type": "Commission"},
            {"amount": {"value": 9000, "currency": "EUR"}, "type": "BalanceAccount"},
        ],
    }
    # when
    status, answer = await post(
        sandbox, f"/payments/{payment['pspReference']}/captures", body, account
    )
    # then nothing was captured
    assert status == 422
    assert answer["errorType"] == "validation"
    assert "sum to 9250, not to the amount 10000" in answer["message"]
    stored = await sandbox.get(f"/sandbox/payments/{payment['pspReference']}")
    assert stored["modifications"] == []


async def test_capture_of_a_refused_payment_is_422(
    sandbox: Sandbox, account: dict[str, Any]
) -> None:
    _, payment = await post(
        sandbox, "/payments", payment_body(account, "4000000000000002"), account
    )
    status, answer = await post(
        sandbox,
        f"/payments/{payment['pspReference']}/captures",
        {
            "merchantAccount": account["merchant_account"],
            "amount": {"value": 10000, "currency": "EUR"},
        },
        account,
    )
    assert status == 422
    assert answer["errorType"] == "validation"


async def test_webhooks_are_retried_until_accepted(sandbox: Sandbox) -> None:
    async with webhook_receiver(fail_first=2) as receiver:
        account = await sandbox.merchant_account("Retry_Shop", receiver.url)
        await post(sandbox, "/payments", payment_body(account), account)
        items = await receiver.wait_for(1)
        await sandbox.drain_webhooks()
    assert receiver.answered == [500, 500, 200]
    assert verify_signature(items[0], [account["hmac_key"]])
    attempts = (await sandbox.get("/sandbox/merchant-accounts/Retry_Shop/webhooks"))["data"]
    assert [a["status"] for a in attempts] == [500, 500, 200]


async def test_fault_latency_and_5xx(sandbox: Sandbox, account: dict[str, Any]) -> None:
    code = account["merchant_account"]
    await sandbox.faults(code, latency_ms=200)
    started = time.monotonic()
    status, _ = await post(sandbox, "/payments", payment_body(account), account)
    assert status == 200
    assert time.monotonic() - started >= 0.2
    await sandbox.faults(code, fail_next=1)
    status, answer = await post(sandbox, "/payments", payment_body(account), account, "k-5xx")
    assert (status, answer["errorType"]) == (500, "internal")
    status, _ = await post(sandbox, "/payments", payment_body(account), account, "k-5xx")
    assert status == 200  # the failed attempt left no idempotency record
    await sandbox.faults(code, error_rate=1.0)
    status, _ = await post(sandbox, "/payments", payment_body(account), account)
    assert status == 500


async def test_fault_timeout_hangs_and_leaves_nothing(
    sandbox: Sandbox, account: dict[str, Any]
) -> None:
    await sandbox.faults(account["merchant_account"], timeout_next=1, hang_ms=5000)
    with pytest.raises(TimeoutError):
        async with sandbox.http.post(
            f"{sandbox.url}/v71/payments",
            json=payment_body(account),
            headers={"X-API-Key": account["api_key"], "Idempotency-Key": "t1"},
            timeout=aiohttp.ClientTimeout(total=0.3),
        ):
            pass
    status, answer = await post(sandbox, "/payments", payment_body(account), account, "t1")
    assert (status, answer["resultCode"]) == (200, "Authorised")
    requests = (
        await sandbox.get(f"/sandbox/merchant-accounts/{account['merchant_account']}/requests")
    )["data"]
    assert [r.get("fault") for r in requests] == ["timeout", None]


async def test_fault_duplicate_and_reordered_webhooks(
    sandbox: Sandbox, account: dict[str, Any], receiver: Receiver
) -> None:
    code = account["merchant_account"]
    await sandbox.faults(code, duplicate_webhooks=True)
    _, first = await post(sandbox, "/payments", payment_body(account), account)
    items = await receiver.wait_for(2)
    assert [i["pspReference"] for i in items] == [first["pspReference"]] * 2
    await sandbox.faults(code, reorder_webhooks=True)
    _, second = await post(sandbox, "/payments", payment_body(account), account)
    _, third = await post(sandbox, "/payments", payment_body(account), account)
    items = await receiver.wait_for(4)
    assert [i["pspReference"] for i in items[2:]] == [third["pspReference"], second["pspReference"]]


async def test_chargeback_notification(
    sandbox: Sandbox, account: dict[str, Any], receiver: Receiver
) -> None:
    _, payment = await post(sandbox, "/payments", payment_body(account), account)
    async with sandbox.http.post(
        f"{sandbox.url}/sandbox/merchant-accounts/{account['merchant_account']}/chargebacks",
        json={"psp_reference": payment["pspReference"]},
    ) as response:
        assert response.status == 201
    items = await receiver.wait_for(2)
    assert items[1]["eventCode"] == "CHARGEBACK"
    assert items[1]["originalReference"] == payment["pspReference"]
    assert verify_signature(items[1], [account["hmac_key"]])


async def test_dispute_stages_need_a_captured_payment_and_carry_the_captured_amount(
    sandbox: Sandbox, account: dict[str, Any], receiver: Receiver
) -> None:
    _, payment = await post(sandbox, "/payments", payment_body(account), account)
    ref = payment["pspReference"]
    url = f"{sandbox.url}/sandbox/merchant-accounts/{account['merchant_account']}/chargebacks"
    # a stage on a payment with nothing captured is refused
    async with sandbox.http.post(url, json={"psp_reference": ref, "stage": "CHARGEBACK"}) as r:
        assert r.status == 422
    await post(
        sandbox,
        f"/payments/{ref}/captures",
        {
            "merchantAccount": account["merchant_account"],
            "amount": {"value": 6000, "currency": "EUR"},
        },
        account,
        "cap-6000",
    )
    for stage in ("NOTIFICATION_OF_CHARGEBACK", "CHARGEBACK", "SECOND_CHARGEBACK"):
        async with sandbox.http.post(url, json={"psp_reference": ref, "stage": stage}) as r:
            assert r.status == 201
    items = await receiver.wait_for(5)
    disputes = [
        i for i in items if i["eventCode"] != "AUTHORISATION" and i["eventCode"] != "CAPTURE"
    ]
    assert [i["eventCode"] for i in disputes] == [
        "NOTIFICATION_OF_CHARGEBACK",
        "CHARGEBACK",
        "SECOND_CHARGEBACK",
    ]
    assert {i["amount"]["value"] for i in disputes} == {6000}
    assert all(verify_signature(i, [account["hmac_key"]]) for i in disputes)


async def test_dropped_confirmations_are_held_until_released(
    sandbox: Sandbox, account: dict[str, Any], receiver: Receiver
) -> None:
    _, payment = await post(sandbox, "/payments", payment_body(account), account)
    ref = payment["pspReference"]
    merchant = account["merchant_account"]
    await receiver.wait_for(1)
    await sandbox.faults(merchant, drop_next_webhooks=1)
    amount = {"value": 10000, "currency": "EUR"}
    await post(
        sandbox,
        f"/payments/{ref}/captures",
        {"merchantAccount": merchant, "amount": amount},
        account,
        "c1",
    )
    held = await sandbox.get(f"/sandbox/payments/{ref}")
    assert held["modifications"][0]["webhookDropped"] is True
    assert held["captured"] == 10000  # the PSP took it; it just says nothing
    async with sandbox.http.post(
        f"{sandbox.url}/sandbox/merchant-accounts/{merchant}/webhooks/release-dropped"
    ) as response:
        released = (await response.json())["released"]
    assert released == [held["modifications"][0]["pspReference"]]
    items = await receiver.wait_for(2)
    assert items[1]["eventCode"] == "CAPTURE"


async def test_card_numbers_never_reach_the_logs(
    sandbox: Sandbox, account: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    configure_logging("psp_sandbox", "DEBUG")
    caplog.set_level(logging.DEBUG)
    for number in ("4242424242424242", "4000000000000002", "4242424242424241"):
        await post(sandbox, "/payments", payment_body(account, number), account)
    await sandbox.drain_webhooks()
    assert caplog.records  # the sandbox does log
    logged = caplog.text + " ".join(str(r.msg) for r in caplog.records)
    assert "424242424242" not in logged
    assert "400000000000" not in logged


async def test_a_company_key_acts_for_the_merchant_account_named_in_the_body() -> None:
    from psp_sandbox.testing import running_sandbox

    async with running_sandbox(company_api_key="company-key") as sandbox:
        # given two merchant accounts of one company
        a = await sandbox.merchant_account("Company_A", None)
        await sandbox.merchant_account("Company_B", None)
        company = {"api_key": "company-key"}
        # when the company key pays for each, and for an account that does not exist
        status_a, answer_a = await post(sandbox, "/payments", payment_body(a), company)
        body_b = {**payment_body(a), "merchantAccount": "Company_B"}
        status_b, answer_b = await post(sandbox, "/payments", body_b, company)
        body_x = {**payment_body(a), "merchantAccount": "Nobody"}
        status_x, _ = await post(sandbox, "/payments", body_x, company)
        # then each payment belongs to the account it named
        assert (status_a, answer_a["resultCode"]) == (200, "Authorised")
        assert (status_b, answer_b["resultCode"]) == (200, "Authorised")
        stored = await sandbox.get(f"/sandbox/payments/{answer_b['pspReference']}")
        assert stored["merchantAccount"] == "Company_B"
        assert status_x == 403
