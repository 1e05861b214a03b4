"""What an operator's resend of an unconfirmed capture makes of the PSP's answer: accepted,
refused, or unknown. A surprise (a bug, a transport error no adapter mapped) is an unknown
outcome recorded on the intervention, never a 500 that leaves the operator guessing."""

from __future__ import annotations

from typing import Any

import pytest

from capture.refunds.domain import Accepted, NoAnswer, Rejected
from capture.refunds.service import CaptureResend, send_capture_again
from common.money import Money
from common.psp.port import (
    CaptureRequest,
    ModificationResult,
    PspUnavailable,
    PspValidationError,
)

RESEND = CaptureResend(
    intervention=None,  # type: ignore[arg-type]  # not read when sending
    capture_id="cap_1",
    idempotency_key="cap_1:1",
    request=CaptureRequest(
        psp_reference="PSP1", amount=Money(value=1000, currency="EUR"), merchant_account="M"
    ),
)


class Port:
    """The PSP port's capture, answering with `outcome` (raised when an exception)."""

    def __init__(self, outcome: Any) -> None:
        self.outcome = outcome
        self.keys: list[str] = []

    async def capture(self, request: CaptureRequest, *, idempotency_key: str) -> Any:
        self.keys.append(idempotency_key)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


@pytest.mark.parametrize(
    ("outcome", "answer"),
    [
        (
            ModificationResult(
                psp_reference="MOD1",
                payment_psp_reference="PSP1",
                status="received",
                merchant_account="M",
            ),
            Accepted("MOD1"),
        ),
        (
            PspValidationError("amount too high", code="amount_invalid"),
            Rejected("amount_invalid", "amount too high"),
        ),
        (
            PspUnavailable("no route", code="gateway_unavailable"),
            NoAnswer("gateway_unavailable", "no route"),
        ),
        (
            RuntimeError("session closed"),
            NoAnswer("psp_call_error", "RuntimeError: session closed"),
        ),
    ],
)
async def test_a_resend_answer_is_accepted_refused_or_unknown(outcome, answer):
    port = Port(outcome)
    assert await send_capture_again(port, RESEND) == answer  # type: ignore[arg-type]
    assert port.keys == ["cap_1:1"]  # under the capture's own key
