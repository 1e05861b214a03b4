"""`payment.bank_transfer_paid` (checkout): the paid order's lines become captures that
succeeded without a PSP call (`bank_transfer_domain`), published as `capture.succeeded` with
their splits, so payouts credits the ledger exactly as for card money. Redelivery is a no-op:
the inbox, and a line that has a capture already is skipped."""

from __future__ import annotations

from datetime import datetime

from capture import errors
from capture.bank_transfer_domain import bank_transfer_captures
from capture.clock import RANDOM_IDS
from capture.domain import Capture, Line, Payment
from capture.repository import CaptureSaves
from capture.shipment_domain import Ids
from common.events import BankTransferPaid


async def record_bank_transfer_paid(
    repo: CaptureSaves,
    tenant_id: str,
    event: BankTransferPaid,
    *,
    now: datetime,
    ids: Ids = RANDOM_IDS,
) -> list[Capture]:
    lines = [Line(x.logistic_order_id, x.supplier_id, x.amount) for x in event.lines]
    tenancy = await repo.tenancy(tenant_id, [x.supplier_id for x in lines])
    if tenancy.tenant is None:
        raise errors.TenantNotReplicated(tenant_id)
    payment = Payment(
        tenant_id=tenant_id,
        payment_id=event.payment_id,
        order_id=event.order_id,
        payment_option=event.payment_option,
        status="PAID",
        capture_mode=None,
        amount=event.amount.value,
        currency=event.amount.currency,
        psp_reference=event.reference,
        merchant_account=event.merchant_account,
        level3=None,
    )
    existing = (await repo.captures_of_payment(tenant_id, event.payment_id)).keys()
    decided = bank_transfer_captures(
        payment,
        lines,
        tenancy,
        existing,
        now=now,
        capture_ids=[ids.capture() for _ in lines],
        intervention_ids=[ids.intervention() for _ in lines],
    )
    return await repo.save_new_captures(decided)
