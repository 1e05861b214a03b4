"""Checkout use cases. Each takes its connection (and clock) as arguments and runs in one
transaction; state changes and their `payment.*` events commit together."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from checkout import bank_transfer_repo, bank_transfers, domain, errors, repo
from checkout.bank_transfer_domain import StoredBankTransfer, payment_option_refusal
from checkout.domain import Fact, Status, StoredLine, StoredPayment
from checkout.schemas import (
    Level3In,
    LineOut,
    Payment,
    SessionCreate,
    SessionCreated,
    TimelineEntry,
)
from common.broker import publish_event
from common.db.types import Conn
from common.events import (
    BANK_WIRE_OPTIONS,
    EventType,
    PaymentCreated,
    PaymentLine,
)
from common.http.auth import hash_key
from common.http.errors import Unprocessable
from common.logging import get_logger
from common.money import Money

log = get_logger("checkout.service")


PAYMENT_ID_PREFIX = "pay_"  # a merchant reference without it names a capture or a refund


def new_payment_id() -> str:
    return f"{PAYMENT_ID_PREFIX}{secrets.token_hex(12)}"


def new_client_token() -> str:
    return f"ct_{secrets.token_urlsafe(32)}"


def _problem(problem: domain.Problem | None) -> None:
    if problem is not None:
        raise Unprocessable(problem.message, code=problem.code, param=problem.param)


async def create_session(
    conn: Conn,
    *,
    tenant_id: str,
    body: SessionCreate,
    now: datetime,
    token_ttl: timedelta,
    bank_transfer_iban: str = "",
) -> SessionCreated:
    tenant = await repo.tenant_replica(conn, tenant_id)
    if tenant is None:
        raise errors.tenant_not_ready()
    if body.amount.value <= 0:
        raise Unprocessable(
            "the amount must be a positive integer in the currency's minor unit",
            code="invalid_charge_amount",
            param="amount.value",
        )
    lines = [domain.Line(x.logistic_order_id, x.supplier_id, x.amount) for x in body.lines]
    known = await repo.supplier_ids(conn, tenant_id, [x.supplier_id for x in lines])
    _problem(domain.check_lines(body.amount.value, lines, known))
    if body.payment_option is domain.PaymentOption.PCARD_L3:
        if body.level3 is None:
            raise Unprocessable(
                "PCARD_L3 payments need Level 2/3 data", code="parameter_missing", param="level3"
            )
        _problem(domain.check_level3(body.amount.value, _level3(body)))
    elif body.level3 is not None:
        raise Unprocessable(
            "Level 2/3 data is only for PCARD_L3 payments",
            code="unexpected_parameter",
            param="level3",
        )
    if body.payment_option.value in BANK_WIRE_OPTIONS:
        account_option = await bank_transfer_repo.buyer_account_option(
            conn, tenant_id, body.buyer_account
        )
        refusal = payment_option_refusal(body.payment_option.value, account_option)
        if refusal is not None:
            raise Unprocessable(refusal, code="payment_option_not_allowed", param="payment_option")
    payment_id = new_payment_id()
    token = new_client_token()
    expires_at = now + token_ttl
    await repo.insert_payment(
        conn,
        id_=payment_id,
        tenant_id=tenant_id,
        values={
            "order_id": body.order_id,
            "buyer_account": body.buyer_account,
            "payment_option": body.payment_option.value,
            "capture_mode": body.capture_mode,
            "amount": body.amount.value,
            "currency": body.amount.currency,
            "country_code": body.country_code,
            "merchant_account": tenant["merchant_account"],
            "return_url": str(body.return_url) if body.return_url else None,
            "level3": body.level3.model_dump(mode="json") if body.level3 else None,
        },
        lines=lines,
        client_token_hash=hash_key(token),
        expires_at=expires_at,
    )
    await repo.add_timeline(conn, payment_id, "created", status_to=Status.INIT_PAYMENT)
    await publish_event(
        conn,
        EventType.PAYMENT_CREATED,
        PaymentCreated(
            payment_id=payment_id,
            order_id=body.order_id,
            payment_option=body.payment_option.value,
            amount=body.amount,
            lines=[PaymentLine.model_validate(x.model_dump()) for x in body.lines],
        ),
        tenant_id=tenant_id,
        aggregate_id=payment_id,
    )
    instructions = None
    if body.payment_option.value in BANK_WIRE_OPTIONS:
        instructions = await bank_transfers.open_payment(
            conn,
            payment_id=payment_id,
            tenant_id=tenant_id,
            order_id=body.order_id,
            amount=body.amount.value,
            currency=body.amount.currency,
            iban=str(tenant.get("bank_transfer_iban") or bank_transfer_iban),
        )
    return SessionCreated(
        id=payment_id,
        payment_id=payment_id,
        client_token=token,
        expires_at=expires_at,
        status=Status.WAITING_PAYMENT if instructions else Status.INIT_PAYMENT,
        amount=body.amount,
        bank_transfer=instructions,
    )


def _level3(body: SessionCreate) -> domain.Level3:
    assert body.level3 is not None
    return level3_of(body.level3)


def level3_of(l3: Level3In) -> domain.Level3:
    return domain.Level3(
        customer_reference=l3.customer_reference,
        tax_total=l3.tax_total,
        freight=l3.freight,
        duty=l3.duty,
        items=[
            domain.Level3Item(
                commodity_code=i.commodity_code,
                description=i.description,
                quantity=i.quantity,
                unit_of_measure=i.unit_of_measure,
                unit_price=i.unit_price,
                discount=i.discount,
                total=i.total,
            )
            for i in l3.items
        ],
    )


async def change_status(
    conn: Conn,
    payment: StoredPayment,
    fact: Fact,
    *,
    source: str,
    detail: dict[str, Any] | None = None,
    updates: dict[str, Any] | None = None,
    remaining_capture: bool = False,
    previous: Status | None = None,
) -> Status:
    """Apply `fact` to a payment locked by the caller: load what the decision reads, decide
    (`domain.decide_transition`, pure), save the decision and its events in one repo call."""
    facts = repo.facts_of(payment)
    authorises = domain.authorises(facts.status, fact, remaining_capture=remaining_capture)
    lines = await repo.event_lines(conn, facts.id) if authorises else []
    transition = _decided(
        facts,
        fact,
        source=source,
        detail=detail,
        updates=updates,
        remaining_capture=remaining_capture,
        previous=previous,
        lines=lines,
    )
    await repo.save_transition(conn, facts, transition)
    return transition.status


def stage_status_change(
    changes: repo.PaymentChanges,
    payment: StoredPayment,
    fact: Fact,
    *,
    lines: Sequence[StoredLine],
    source: str,
    detail: dict[str, Any] | None = None,
    remaining_capture: bool = False,
) -> Status:
    """`change_status` for a consumer batch: the decision is added to `changes`, which the
    batch saves once (`repo.save_payment_changes`). `lines`: the payment's lines as the batch
    loaded them (a move back to AUTHORIZED publishes them in `payment.authorised`). Only for
    facts that set the status alone."""
    facts = repo.facts_of(payment)
    transition = _decided(
        facts,
        fact,
        source=source,
        detail=detail,
        remaining_capture=remaining_capture,
        lines=repo.event_lines_of(lines),
    )
    changes.transition(facts, transition)
    return transition.status


def _decided(
    facts: domain.PaymentFacts,
    fact: Fact,
    *,
    source: str,
    detail: dict[str, Any] | None,
    remaining_capture: bool,
    lines: Sequence[PaymentLine],
    updates: dict[str, Any] | None = None,
    previous: Status | None = None,
) -> domain.Transition:
    """`domain.decide_transition`, with an illegal transition logged."""
    transition = domain.decide_transition(
        facts,
        fact,
        source=source,
        detail=detail,
        updates=updates,
        remaining_capture=remaining_capture,
        previous=previous,
        lines=lines,
    )
    if transition.refused is not None:
        log.warning("illegal transition refused", payment_id=facts.id, reason=transition.refused)
    return transition


async def payment_view(
    conn: Conn,
    row: StoredPayment,
    *,
    supplier_id: str | None = None,
    with_timeline: bool = False,
) -> Payment:
    lines = (await repo.lines_of(conn, [row.id], supplier_id)).get(row.id, [])
    timeline = None
    if with_timeline:
        timeline = [
            TimelineEntry(**dataclasses.asdict(t)) for t in await repo.timeline_of(conn, row.id)
        ]
    transfer = (await bank_transfer_repo.of_payments(conn, [row.id])).get(row.id)
    return to_payment(row, lines, timeline, transfer)


def to_payment(
    row: StoredPayment,
    lines: list[StoredLine],
    timeline: list[TimelineEntry] | None,
    transfer: StoredBankTransfer | None = None,
) -> Payment:
    return Payment(
        id=row.id,
        order_id=row.order_id,
        buyer_account=row.buyer_account,
        payment_option=row.payment_option,
        capture_mode=row.capture_mode,
        amount=Money(value=row.amount, currency=row.currency),
        status=row.status,
        psp_reference=row.psp_reference,
        result_code=row.result_code,
        refusal_reason=row.refusal_reason,
        business_card=row.business_card,
        lines=[LineOut(**{k: getattr(line, k) for k in LineOut.model_fields}) for line in lines],
        created_at=row.created_at,
        updated_at=row.updated_at,
        timeline=timeline,
        bank_transfer=bank_transfers.instructions_of(transfer) if transfer is not None else None,
    )
