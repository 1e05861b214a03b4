"""The drop-in's payment use cases: PAY-501 payment methods, PAY-101 pay, PAY-102 details,
and the operator's cancel.

A PSP call never runs inside a database transaction. PAY-101 first moves the payment to
`AUTHORIZATION_PENDING` and commits; then calls the PSP with an idempotency key derived from
the payment id; then records the answer in a second transaction. The use cases here take the
connection of the caller's transaction; the HTTP edge (`api.py`) opens the short transactions
around the PSP call and holds no connection while it runs. If the process dies in
between, a retry with the same `Idempotency-Key` calls the PSP again with the same PSP key and
gets the same answer; if the PSP does not answer in time, the payment stays
`AUTHORIZATION_PENDING` and the AUTHORISATION webhook settles it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from checkout import domain, errors, repo, service
from checkout.domain import Fact, Status, StoredPayment
from checkout.schemas import Level3In, PayRequest, PayResult
from common.db.types import Conn
from common.http.errors import Conflict, PaymentRequired, Unprocessable
from common.logging import get_logger
from common.money import Money
from common.psp.port import (
    AuthorisationResult,
    AuthoriseRequest,
    CancelRequest,
    ModificationResult,
    PaymentMethodsRequest,
    PaymentMethodsResult,
    PspError,
    PspPort,
)

log = get_logger("checkout.payments")


async def payment_methods(psp: PspPort, payment: StoredPayment) -> PaymentMethodsResult:
    return await psp.payment_methods(
        PaymentMethodsRequest(
            amount=Money(value=payment.amount, currency=payment.currency),
            country_code=payment.country_code,
            merchant_account=payment.merchant_account,
        )
    )


def refuse_raw_card_data(payment_method: dict[str, Any]) -> None:
    raw = domain.raw_card_data(payment_method)
    if raw is not None:
        raise Unprocessable(
            "card numbers and security codes are never accepted here: send the drop-in's"
            " encrypted or tokenised fields",
            code="raw_card_data_refused",
            param=raw,
        )


async def start_payment(
    conn: Conn, payment_id: str, tenant_id: str, body: PayRequest
) -> tuple[StoredPayment, str]:
    """PAY-101's first step, in the caller's (short) transaction: the payment moves to
    `AUTHORIZATION_PENDING` (or already waits there without an answer). Returns the payment as
    loaded and the return URL the PSP call uses."""
    payment = await repo.get_payment(conn, tenant_id, payment_id, for_update=True)
    if payment is None:
        raise errors.payment_not_found()
    status = Status(payment.status)
    if status is Status.INIT_PAYMENT:
        await service.change_status(conn, payment, Fact.AUTHORISATION_REQUESTED, source="api")
    elif not (status is Status.AUTHORIZATION_PENDING and payment.result_code is None):
        raise Conflict(
            f"this payment was already attempted and is {status}; start a new session",
            code="payment_not_payable",
        )
    return_url = str(body.return_url) if body.return_url else payment.return_url
    if return_url is None:
        raise Unprocessable(
            "a return_url is required", code="parameter_missing", param="return_url"
        )
    return payment, return_url


def authorise_request(
    payment: StoredPayment, body: PayRequest, return_url: str
) -> AuthoriseRequest:
    return AuthoriseRequest(
        reference=payment.id,
        amount=Money(value=payment.amount, currency=payment.currency),
        payment_method=body.payment_method,
        return_url=return_url,
        browser_info=body.browser_info,
        additional_data=_level3_data(payment),
        shopper_reference=payment.buyer_account,
        country_code=payment.country_code,
        merchant_account=payment.merchant_account,
    )


async def awaiting_details(conn: Conn, payment_id: str, tenant_id: str) -> StoredPayment:
    """PAY-102's check: the payment waits for the shopper's authentication details."""
    payment = await repo.get_payment(conn, tenant_id, payment_id)
    if payment is None:
        raise errors.payment_not_found()
    if payment.status != Status.AUTHORIZATION_PENDING or payment.result_code not in (
        "ChallengeShopper",
        "IdentifyShopper",
        "RedirectShopper",
    ):
        raise Conflict(
            "this payment is not waiting for authentication details",
            code="payment_not_awaiting_details",
        )
    return payment


def details_idempotency_key(payment_id: str, details: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(details, sort_keys=True).encode()).hexdigest()[:24]
    return f"details:{payment_id}:{digest}"


async def cancellable(conn: Conn, payment_id: str, tenant_id: str) -> StoredPayment:
    payment = await repo.get_payment(conn, tenant_id, payment_id)
    if payment is None:
        raise errors.payment_not_found()
    if payment.status != Status.AUTHORIZED or payment.psp_reference is None:
        raise Conflict(
            f"only an authorised payment can be cancelled; this one is {payment.status}",
            code="payment_not_cancellable",
        )
    return payment


async def request_cancel(psp: PspPort, payment: StoredPayment) -> ModificationResult:
    """The PSP call of a cancellation; no connection is held while it runs."""
    assert payment.psp_reference is not None
    try:
        return await psp.cancel(
            CancelRequest(
                psp_reference=payment.psp_reference,
                reference=payment.id,
                merchant_account=payment.merchant_account,
            ),
            idempotency_key=f"cancel:{payment.id}",
        )
    except PspError as exc:
        raise Conflict(
            f"the PSP did not take the cancellation: {exc.message}", code=exc.code
        ) from None


async def cancel(conn: Conn, payment: StoredPayment, received: ModificationResult) -> Status:
    """Record that the PSP took the cancellation (the CANCELLATION webhook confirms it)."""
    await repo.add_timeline(
        conn,
        payment.id,
        "cancel_requested",
        status_from=payment.status,
        detail={"psp_reference": received.psp_reference, "status": received.status},
    )
    return Status(payment.status)


def _level3_data(payment: StoredPayment) -> dict[str, str] | None:
    if payment.level3 is None:
        return None
    level3 = service.level3_of(Level3In.model_validate(payment.level3))
    return domain.level3_additional_data(level3)


async def pending(conn: Conn, payment_id: str, tenant_id: str, exc: PspError) -> PayResult:
    """The PSP did not answer: the payment stays pending, noted in its timeline."""
    log.warning("PSP did not answer; the webhook will settle", payment_id=payment_id, code=exc.code)
    payment = await repo.get_payment(conn, tenant_id, payment_id, for_update=True)
    assert payment is not None
    await repo.note(conn, payment, "psp_no_answer", {"code": exc.code})
    return _result(payment)


async def record_failure(conn: Conn, payment_id: str, tenant_id: str, exc: PspError) -> None:
    payment = await repo.get_payment(conn, tenant_id, payment_id, for_update=True)
    assert payment is not None
    await service.change_status(
        conn,
        payment,
        Fact.FAILED,
        source="psp_response",
        detail={"code": exc.code, "psp_error_code": exc.psp_error_code},
        updates={"result_code": "Error"},
    )


async def settle(
    conn: Conn, payment_id: str, tenant_id: str, result: AuthorisationResult, source: str
) -> PayResult:
    """Record the PSP's answer in the caller's transaction. A refusal is returned, not
    raised, so that it commits: the caller raises it with `raise_if_refused` afterwards."""
    detail: dict[str, Any] = {
        "result_code": result.result_code,
        "psp_reference": result.psp_reference,
        "refusal_reason": result.refusal_reason,
        "refusal_reason_code": result.refusal_reason_code,
    }
    decided = domain.settlement(
        result_code=result.result_code,
        psp_reference=result.psp_reference,
        is_commercial_card=result.is_commercial_card,
        refusal_reason=result.refusal_reason,
        refusal_reason_code=result.refusal_reason_code,
    )
    fact, updates = decided.fact, decided.updates
    payment = await repo.get_payment(conn, tenant_id, payment_id, for_update=True)
    assert payment is not None
    if fact is None:  # challenge, pending, received: still waiting
        await repo.update_payment(conn, payment_id, updates)
        await repo.note(conn, payment, source, detail)
    else:
        await service.change_status(
            conn, payment, fact, source=source, detail=detail, updates=updates
        )
    payment = await repo.get_payment(conn, tenant_id, payment_id)
    assert payment is not None
    return _result(payment, action=result.action, decline_code=result.decline_code)


def raise_if_refused(outcome: PayResult, result: AuthorisationResult) -> None:
    if outcome.status == Status.REFUSED:
        raise PaymentRequired(
            result.refusal_reason or "the payment was refused",
            code=result.decline_code or "card_declined",
            param="payment_method",
        )


def _result(
    payment: StoredPayment, action: dict[str, Any] | None = None, decline_code: str | None = None
) -> PayResult:
    return PayResult(
        id=payment.id,
        status=payment.status,
        result_code=payment.result_code,
        action=action,
        refusal_reason=payment.refusal_reason,
        decline_code=decline_code,
        business_card=payment.business_card,
    )
