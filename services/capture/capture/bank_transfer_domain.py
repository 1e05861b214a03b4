"""Bank-transfer money into the split, decided purely: a paid bank-transfer order needs no
capture at the PSP, but each of its logistic orders is split with the same commission rules
(`split`, rates frozen now) and recorded as a capture SUCCEEDED at once, trigger
`BANK_TRANSFER`, with the usual `capture.succeeded`. An invalid split blocks it exactly as it
blocks a card capture (`capture.blocked` and an intervention)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime

from capture.domain import (
    Blocked,
    CaptureStatus,
    Line,
    NewCapture,
    Payment,
    Prepared,
    Tenancy,
    capture_event,
    new_capture,
    split,
)


def bank_transfer_captures(
    payment: Payment,
    lines: Sequence[Line],
    tenancy: Tenancy,
    existing: Collection[str],
    *,
    now: datetime,
    capture_ids: Sequence[str],
    intervention_ids: Sequence[str],
) -> list[NewCapture]:
    """The captures of the lines that have none yet (`existing` names those that do)."""
    decided: list[NewCapture] = []
    fresh = [line for line in lines if line.logistic_order_id not in existing]
    for line, capture_id, intervention_id in zip(
        fresh, capture_ids, intervention_ids, strict=False
    ):
        supplier = tenancy.suppliers.get(line.supplier_id)
        prepared: Prepared | Blocked
        if supplier is None:
            prepared = Blocked(
                "supplier_unknown",
                "the supplier is not known to capture (yet): its commission rate cannot be read",
            )
        else:
            commission = split(
                line.amount,
                tenancy.tenant.default_rate if tenancy.tenant else None,
                supplier.commission_rate,
            )
            prepared = commission if isinstance(commission, Blocked) else Prepared(commission, None)
        new = new_capture(
            payment,
            line,
            prepared,
            trigger="BANK_TRANSFER",
            now=now,
            capture_id=capture_id,
            intervention_id=intervention_id,
            source="bank_transfer",
        )
        if isinstance(prepared, Prepared):
            settled = replace(
                new.capture,
                status=CaptureStatus.SUCCEEDED,
                next_attempt_at=None,
                succeeded_at=now,
            )
            new = replace(new, capture=settled, events=(capture_event(settled, "succeeded"),))
        decided.append(new)
    return decided
