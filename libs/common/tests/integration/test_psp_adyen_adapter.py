"""The Adyen adapter against the PSP sandbox, over HTTP."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr

from common.money import Money
from common.psp.adyen import AdyenAdapter, AdyenConfig
from common.psp.port import (
    AuthoriseRequest,
    CancelRequest,
    CaptureRequest,
    DetailsRequest,
    PaymentMethodsRequest,
    PspAuthenticationError,
    PspPort,
    PspTimeout,
    PspUnavailable,
    PspValidationError,
    RefundRequest,
    Split,
)
from psp_sandbox.domain import encode_three_ds_result
from psp_sandbox.testing import Receiver, Sandbox, running_sandbox, webhook_receiver

EUR_100 = Money(value=10000, currency="EUR")


@pytest_asyncio.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with running_sandbox() as sandbox:
        yield sandbox


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with webhook_receiver() as receiver:
        yield receiver


@pytest_asyncio.fixture
async def account(sandbox: Sandbox, receiver: Receiver) -> dict[str, Any]:
    return await sandbox.merchant_account("Adapter_Shop", receiver.url)


def config(sandbox: Sandbox, account: dict[str, Any], **more: Any) -> AdyenConfig:
    values: dict[str, Any] = {
        "base_url": f"{sandbox.url}/v71",
        "api_key": SecretStr(account["api_key"]),
        "merchant_account": account["merchant_account"],
        "timeout_s": 2.0,
        "max_attempts": 3,
        "retry_initial_delay_s": 0.01,
        "retry_max_delay_s": 0.05,
    }
    return AdyenConfig(**(values | more))


@pytest_asyncio.fixture
async def psp(sandbox: Sandbox, account: dict[str, Any]) -> AsyncIterator[AdyenAdapter]:
    async with AdyenAdapter(config(sandbox, account)) as adapter:
        yield adapter


def card(number: str, month: str = "03", year: str = "2030") -> dict[str, Any]:
    return {
        "type": "scheme",
        "encryptedCardNumber": f"test_{number}",
        "encryptedExpiryMonth": f"test_{month}",
        "encryptedExpiryYear": f"test_{year}",
        "encryptedSecurityCode": "test_737",
    }


def authorise(number: str = "4242424242424242", **more: Any) -> AuthoriseRequest:
    return AuthoriseRequest(
        reference="order-1",
        amount=EUR_100,
        payment_method=card(number),
        return_url="https://shop.example/return",
        **more,
    )


async def requests_seen(sandbox: Sandbox, account: dict[str, Any]) -> list[dict[str, Any]]:
    data = await sandbox.get(f"/sandbox/merchant-accounts/{account['merchant_account']}/requests")
    return list(data["data"])


async def test_the_adapter_is_a_psp_port(psp: AdyenAdapter) -> None:
    assert isinstance(psp, PspPort)
    methods = await psp.payment_methods(PaymentMethodsRequest(amount=EUR_100, country_code="FR"))
    assert methods.payment_methods[0]["type"] == "scheme"


async def test_authorise_success_with_splits_and_level3_data(
    psp: AdyenAdapter, sandbox: Sandbox
) -> None:
    # given
    request = authorise(
        "4000000000004004",
        splits=[
            Split(amount=9000, type="BalanceAccount", account="BA1", reference="supplier"),
            Split(amount=1000, type="Commission", reference="platform"),
        ],
        additional_data={"enhancedSchemeData.customerReference": "PO-42"},
    )
    # when
    result = await psp.authorise(request, idempotency_key="authorise:pay_1")
    # then
    assert result.authorised
    assert result.psp_reference is not None
    assert result.amount == EUR_100
    assert (result.brand, result.card_summary) == ("visa", "4004")
    assert result.is_commercial_card
    assert result.decline_code is None
    stored = await sandbox.get(f"/sandbox/payments/{result.psp_reference}")
    assert stored["idempotencyKey"] == "authorise:pay_1"
    assert stored["splits"][0] == {
        "amount": {"value": 9000, "currency": "EUR"},
        "type": "BalanceAccount",
        "account": "BA1",
        "reference": "supplier",
    }
    assert stored["additionalData"] == {"enhancedSchemeData.customerReference": "PO-42"}


@pytest.mark.parametrize(
    ("number", "decline"),
    [
        ("4000000000000002", "card_declined"),
        ("4000000000009995", "insufficient_funds"),
        ("4000000000009987", "lost_card"),
        ("4000000000009979", "stolen_card"),
        ("4000000000000069", "expired_card"),
        ("4000000000000127", "invalid_cvc"),
        ("4000000000000119", "gateway_error"),
    ],
)
async def test_refusals_are_results_with_a_decline_code(
    psp: AdyenAdapter, number: str, decline: str
) -> None:
    result = await psp.authorise(authorise(number), idempotency_key=f"authorise:{number}")
    assert result.result_code == "Refused"
    assert result.decline_code == decline
    assert result.refusal_reason


async def test_three_ds_challenge_then_details(psp: AdyenAdapter) -> None:
    # given
    first = await psp.authorise(authorise("4000000000003220"), idempotency_key="authorise:3ds")
    assert first.result_code == "ChallengeShopper"
    assert first.needs_action
    assert first.action is not None
    assert first.action["type"] == "threeDS2"
    # when
    trans_id = first.action["authorisationToken"]
    details = DetailsRequest(
        details={"threeDSResult": encode_three_ds_result(trans_id, authenticated=True)}
    )
    final = await psp.submit_details(details, idempotency_key="details:3ds")
    # then
    assert final.authorised
    assert final.psp_reference == first.psp_reference


async def test_failed_challenge_is_not_authenticated(psp: AdyenAdapter) -> None:
    first = await psp.authorise(authorise("4000008400001629"), idempotency_key="authorise:3ds-f")
    assert first.action is not None
    details = DetailsRequest(
        details={"threeDSResult": encode_three_ds_result(first.action["authorisationToken"], True)}
    )
    final = await psp.submit_details(details, idempotency_key="details:3ds-f")
    assert (final.result_code, final.decline_code) == ("Refused", "not_authenticated")


async def test_validation_errors_are_mapped_and_not_retried(
    psp: AdyenAdapter, sandbox: Sandbox, account: dict[str, Any]
) -> None:
    with pytest.raises(PspValidationError) as raised:
        await psp.authorise(authorise("4242424242424241"), idempotency_key="authorise:luhn")
    assert raised.value.code == "card_number_invalid"
    assert raised.value.psp_error_code == "101"
    assert not raised.value.retryable
    assert len(await requests_seen(sandbox, account)) == 1


async def test_wrong_api_key_is_an_authentication_error(
    sandbox: Sandbox, account: dict[str, Any]
) -> None:
    async with AdyenAdapter(config(sandbox, account, api_key=SecretStr("wrong"))) as psp:
        with pytest.raises(PspAuthenticationError) as raised:
            await psp.authorise(authorise(), idempotency_key="authorise:x")
    assert raised.value.code == "gateway_authentication_error"


async def test_a_hanging_psp_is_a_retryable_timeout_after_retries_with_one_key(
    sandbox: Sandbox, account: dict[str, Any]
) -> None:
    # given a PSP that never answers in time
    await sandbox.faults(account["merchant_account"], timeout=True, hang_ms=3000)
    # when
    async with AdyenAdapter(config(sandbox, account, timeout_s=0.2, max_attempts=2)) as psp:
        with pytest.raises(PspTimeout) as raised:
            await psp.authorise(authorise(), idempotency_key="authorise:pay_hang")
    # then
    assert raised.value.retryable
    assert raised.value.code == "gateway_timeout_error"
    seen = await requests_seen(sandbox, account)
    assert [r["idempotencyKey"] for r in seen] == ["authorise:pay_hang"] * 2


async def test_retry_after_a_timeout_reuses_the_idempotency_key(
    sandbox: Sandbox, account: dict[str, Any]
) -> None:
    await sandbox.faults(account["merchant_account"], timeout_next=1, hang_ms=3000)
    async with AdyenAdapter(config(sandbox, account, timeout_s=0.3)) as psp:
        result = await psp.authorise(authorise(), idempotency_key="authorise:pay_t")
    assert result.authorised
    seen = await requests_seen(sandbox, account)
    assert [(r["idempotencyKey"], r.get("fault")) for r in seen] == [
        ("authorise:pay_t", "timeout"),
        ("authorise:pay_t", None),
    ]


async def test_5xx_is_retried_then_succeeds(
    psp: AdyenAdapter, sandbox: Sandbox, account: dict[str, Any]
) -> None:
    await sandbox.faults(account["merchant_account"], fail_next=2)
    result = await psp.authorise(authorise(), idempotency_key="authorise:pay_5xx")
    assert result.authorised
    seen = await requests_seen(sandbox, account)
    assert [r.get("fault") for r in seen] == ["error", "error", None]
    assert {r["idempotencyKey"] for r in seen} == {"authorise:pay_5xx"}


async def test_5xx_until_retries_run_out_is_psp_unavailable(
    psp: AdyenAdapter, sandbox: Sandbox, account: dict[str, Any]
) -> None:
    await sandbox.faults(account["merchant_account"], error_rate=1.0)
    with pytest.raises(PspUnavailable) as raised:
        await psp.capture(
            CaptureRequest(psp_reference="X" * 16, amount=EUR_100), idempotency_key="capture:1"
        )
    assert raised.value.code == "psp_unavailable"
    assert len(await requests_seen(sandbox, account)) == 3


async def test_unreachable_psp_is_psp_unavailable(account: dict[str, Any]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = AdyenConfig(
        base_url=f"http://127.0.0.1:{port}/v71",
        api_key=SecretStr("k"),
        merchant_account="M",
        max_attempts=2,
        retry_initial_delay_s=0.01,
    )
    async with AdyenAdapter(cfg) as psp:
        with pytest.raises(PspUnavailable):
            await psp.authorise(authorise(), idempotency_key="authorise:down")


async def test_long_ids_give_a_64_char_key(
    psp: AdyenAdapter, sandbox: Sandbox, account: dict[str, Any]
) -> None:
    await psp.authorise(authorise(), idempotency_key="authorise:" + "p" * 100)
    seen = await requests_seen(sandbox, account)
    assert len(seen[0]["idempotencyKey"]) == 64


async def test_modifications_and_webhook_verification(
    psp: AdyenAdapter, account: dict[str, Any], receiver: Receiver
) -> None:
    # given
    payment = await psp.authorise(authorise(), idempotency_key="authorise:mod")
    assert payment.psp_reference is not None
    # when
    capture = await psp.capture(
        CaptureRequest(
            psp_reference=payment.psp_reference,
            amount=EUR_100,
            reference="cap-1",
            splits=[Split(amount=10000, type="BalanceAccount", account="BA1")],
        ),
        idempotency_key="capture:line-1",
    )
    refund = await psp.refund(
        RefundRequest(psp_reference=payment.psp_reference, amount=Money(value=500, currency="EUR")),
        idempotency_key="refund:r1",
    )
    cancel = await psp.cancel(
        CancelRequest(psp_reference=payment.psp_reference), idempotency_key="cancel:c1"
    )
    # then
    assert (capture.status, capture.payment_psp_reference) == ("received", payment.psp_reference)
    assert capture.amount == EUR_100
    assert refund.amount == Money(value=500, currency="EUR")
    assert cancel.status == "received"
    items = await receiver.wait_for(4)
    assert sorted(i["eventCode"] for i in items) == [
        "AUTHORISATION",
        "CANCELLATION",
        "CAPTURE",
        "REFUND",
    ]
    assert all(psp.verify_notification(i, ["00" * 32, account["hmac_key"]]) for i in items)
    assert not psp.verify_notification(items[0] | {"success": "false"}, [account["hmac_key"]])
