"""The official Adyen Python library talks to the sandbox as it would to Adyen's test
environment: only the checkout base URL changes. Its HMAC validator accepts the sandbox's
webhooks."""

from __future__ import annotations

import asyncio
from typing import Any

import Adyen
import pytest
from Adyen import util

from psp_sandbox.testing import Receiver, Sandbox


def official_client(sandbox: Sandbox, account: dict[str, Any]) -> Adyen.Adyen:
    adyen = Adyen.Adyen(
        xapikey=account["api_key"],
        platform="test",
        merchant_account=account["merchant_account"],
        http_timeout=5,
    )
    # The library builds URLs from each service's `baseUrl` (default
    # https://checkout-test.adyen.com/v72); pointing it at the sandbox is the only change.
    for service in (adyen.checkout.payments_api, adyen.checkout.modifications_api):
        service.baseUrl = f"{sandbox.url}/v72"
    return adyen


async def test_official_client_creates_a_payment_and_validates_the_webhook_hmac(
    sandbox: Sandbox, account: dict[str, Any], receiver: Receiver
) -> None:
    # given
    adyen = official_client(sandbox, account)
    request = {
        "merchantAccount": account["merchant_account"],
        "reference": "official-client-1",
        "amount": {"value": 1999, "currency": "EUR"},
        "paymentMethod": {
            "type": "scheme",
            "encryptedCardNumber": "test_4111111111111111",
            "encryptedExpiryMonth": "test_03",
            "encryptedExpiryYear": "test_2030",
            "encryptedSecurityCode": "test_737",
        },
        "returnUrl": "https://shop.example/return",
    }
    # when
    result = await asyncio.to_thread(
        adyen.checkout.payments_api.payments, request, idempotency_key="official:pay-1"
    )
    capture = await asyncio.to_thread(
        adyen.checkout.modifications_api.capture_authorised_payment,
        {
            "merchantAccount": account["merchant_account"],
            "amount": {"value": 1999, "currency": "EUR"},
        },
        result.message["pspReference"],
        idempotency_key="official:capture-1",
    )
    # then
    assert result.status_code == 200
    assert result.message["resultCode"] == "Authorised"
    assert result.psp == result.message["pspReference"]
    assert capture.status_code == 201
    assert capture.message["status"] == "received"
    await receiver.wait_for(2)
    for body in receiver.received:
        assert body["live"] == "false"
        assert util.is_valid_hmac_notification(body, account["hmac_key"])
    forged = receiver.received[0] | {}
    item = dict(forged["notificationItems"][0]["NotificationRequestItem"])
    item["amount"] = {"value": 1, "currency": "EUR"}
    assert not util.is_valid_hmac_notification(item, account["hmac_key"])
    stored = await sandbox.get(f"/sandbox/payments/{result.message['pspReference']}")
    assert stored["idempotencyKey"] == "official:pay-1"


async def test_official_client_sees_adyen_errors(sandbox: Sandbox, account: dict[str, Any]) -> None:
    adyen = official_client(sandbox, account)
    request = {
        "merchantAccount": account["merchant_account"],
        "reference": "official-client-2",
        "amount": {"value": 1000, "currency": "EUR"},
        "paymentMethod": {
            "type": "scheme",
            "encryptedCardNumber": "test_4242424242424241",
            "encryptedExpiryMonth": "test_03",
            "encryptedExpiryYear": "test_2030",
        },
        "returnUrl": "https://shop.example/return",
    }
    with pytest.raises(Adyen.AdyenAPIUnprocessableEntity) as raised:
        await asyncio.to_thread(adyen.checkout.payments_api.payments, request)
    assert raised.value.error_code == "101"
    adyen.client.xapikey = "wrong"
    with pytest.raises(Adyen.AdyenAPIAuthenticationError):
        await asyncio.to_thread(adyen.checkout.payments_api.payments, request)
