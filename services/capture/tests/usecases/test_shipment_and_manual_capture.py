"""The fast tier (cosmicpython's "use-case tests"): the shipment and manual-capture use cases
against the in-memory repository, which implements the same Protocols as the PostgreSQL one.
No server, no I/O: each test runs in milliseconds. The integration tests beside them drive
the same use cases through the real service on real PostgreSQL and RabbitMQ."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

import pytest

from capture import oms, operators
from capture.domain import CaptureStatus, Line, Payment
from capture.memory_repo import InMemoryRepo
from capture.shipment_domain import Ids
from common.events import (
    CaptureBlocked,
    CaptureRequested,
    EventType,
    LogisticOrderStatusChanged,
)
from common.http.errors import Conflict
from common.testing.tenancy import supplier_upserted, tenant_upserted

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
TENANT = "ten_1"


def ids() -> Ids:
    captures, interventions = count(1), count(1)
    return Ids(
        capture=lambda: f"cap_{next(captures):03d}",
        intervention=lambda: f"int_{next(interventions):03d}",
    )


def repo_with(
    *,
    capture_mode="ON_SHIPMENT",
    session_mode=None,
    status="AUTHORISED",
    suppliers=("sup_1", "sup_2"),
    amounts=(6000, 4000),
) -> InMemoryRepo:
    repo = InMemoryRepo(now=NOW)
    repo.add_tenant(tenant_upserted(TENANT, "MA1", capture_mode=capture_mode))
    for supplier in suppliers:
        repo.add_supplier(supplier_upserted(TENANT, supplier, commission_rate="10"))
    repo.add_payment(
        Payment(
            tenant_id=TENANT,
            payment_id="pay_1",
            order_id="ord_1",
            payment_option="CREDIT_CARD",
            status=status,
            capture_mode=session_mode,
            amount=sum(amounts),
            currency="EUR",
            psp_reference="PSP-AUTH-1" if status == "AUTHORISED" else None,
            merchant_account="MA1" if status == "AUTHORISED" else None,
            level3=None,
        ),
        [Line(f"lo_{n + 1}", f"sup_{n + 1}", amount) for n, amount in enumerate(amounts)],
    )
    return repo


def shipped(logistic_order_id="lo_1", supplier_id="sup_1", status="SHIPPED", event_id="oms-1"):
    return LogisticOrderStatusChanged(
        id=event_id,
        tenant_id=TENANT,
        order_id="ord_1",
        logistic_order_id=logistic_order_id,
        supplier_id=supplier_id,
        status=status,
        occurred_at=NOW,
    )


# -- SHIPPED ---------------------------------------------------------------------------------


async def test_shipped_creates_one_pending_capture_with_its_split_and_event():
    # given
    repo = repo_with()
    # when
    outcome = await oms.on_logistic_order_event(repo, "m1", shipped(), now=NOW, ids=ids())
    # then
    assert (outcome.outcome, outcome.capture_id) == ("capture_created", "cap_001")
    [capture] = repo.captures.values()
    assert (capture.status, capture.trigger, capture.amount) == (
        CaptureStatus.PENDING,
        "ON_SHIPMENT",
        6000,
    )
    assert capture.next_attempt_at == NOW
    assert [(x.party, x.amount) for x in capture.splits] == [
        ("PLATFORM", 150),
        ("MARKETPLACE", 600),
        ("SUPPLIER", 5250),
    ]
    [event] = repo.events
    assert event.type is EventType.CAPTURE_REQUESTED
    assert isinstance(event.data, CaptureRequested)
    assert (event.data.capture_id, event.data.revision) == ("cap_001", 1)
    assert repo.oms_events["m1"][1] == outcome


async def test_a_second_shipped_of_the_same_logistic_order_captures_nothing_more():
    # given
    repo = repo_with()
    await oms.on_logistic_order_event(repo, "m1", shipped(), now=NOW, ids=ids())
    # when the OMS sends SHIPPED again, under a new id
    again = await oms.on_logistic_order_event(
        repo, "m2", shipped(event_id="oms-2"), now=NOW, ids=ids()
    )
    # then
    assert (again.outcome, again.reason, again.capture_id) == (
        "ignored",
        "capture_exists",
        "cap_001",
    )
    assert len(repo.captures) == 1
    assert len(repo.events) == 1


@pytest.mark.parametrize(
    ("setup", "event", "expected"),
    [
        ({"capture_mode": "MANUAL"}, shipped(), ("ignored", "capture_mode_not_on_shipment")),
        (
            {"capture_mode": "ON_SHIPMENT", "session_mode": "IMMEDIATE"},
            shipped(),
            ("ignored", "capture_mode_not_on_shipment"),
        ),
        ({}, shipped(supplier_id="sup_2"), ("ignored", "supplier_mismatch")),
        ({}, shipped(logistic_order_id="lo_9"), ("ignored", "logistic_order_unknown")),
        ({}, shipped(status="WAITING_SHIPMENT"), ("recorded", None)),
        (
            {"status": "CREATED"},
            shipped(),
            ("awaiting_authorisation", "payment_not_authorised_yet"),
        ),
        ({"status": "CANCELLED"}, shipped(), ("ignored", "payment_not_authorised")),
    ],
)
async def test_shipped_events_that_capture_nothing_say_why(setup, event, expected):
    # given
    repo = repo_with(**setup)
    # when
    outcome = await oms.on_logistic_order_event(repo, "m1", event, now=NOW, ids=ids())
    # then
    assert (outcome.outcome, outcome.reason) == expected
    assert repo.captures == {}
    assert repo.events == []
    assert repo.oms_events["m1"][1] == outcome


async def test_shipped_for_a_supplier_capture_does_not_know_blocks_the_capture():
    # given a supplier missing from the replica
    repo = repo_with(suppliers=("sup_2",))
    # when
    outcome = await oms.on_logistic_order_event(repo, "m1", shipped(), now=NOW, ids=ids())
    # then blocked, never sent, with an intervention named in its event
    assert outcome.outcome == "capture_created"
    [capture] = repo.captures.values()
    assert (capture.status, capture.block_code) == (CaptureStatus.BLOCKED, "supplier_unknown")
    assert capture.next_attempt_at is None
    [intervention] = repo.interventions.values()
    assert (intervention.kind, intervention.status) == ("blocked", "OPEN")
    [event] = repo.events
    assert isinstance(event.data, CaptureBlocked)
    assert event.data.intervention_id == intervention.id


# -- ADM-PAY-101 -------------------------------------------------------------------------------


async def test_manual_capture_captures_every_line_and_then_says_nothing_is_left():
    # given
    repo = repo_with(capture_mode="MANUAL")
    source = ids()
    # when
    done = await operators.manual_capture(repo, TENANT, "pay_1", None, now=NOW, ids=source)
    # then
    assert [(c.logistic_order_id, c.status, c.trigger) for c in done.captures] == [
        ("lo_1", CaptureStatus.PENDING, "MANUAL"),
        ("lo_2", CaptureStatus.PENDING, "MANUAL"),
    ]
    assert [e.type for e in repo.events] == [EventType.CAPTURE_REQUESTED] * 2
    assert [entry.source for _, entry in repo.history] == ["adm_pay_101"] * 2
    # when again
    with pytest.raises(Conflict) as refused:
        await operators.manual_capture(repo, TENANT, "pay_1", None, now=NOW, ids=source)
    # then
    assert (refused.value.code, refused.value.param) == ("nothing_to_capture", None)
    assert len(repo.captures) == 2


async def test_manual_capture_of_one_line_leaves_the_other():
    # given
    repo = repo_with(capture_mode="MANUAL")
    # when
    done = await operators.manual_capture(repo, TENANT, "pay_1", "lo_2", now=NOW, ids=ids())
    # then
    assert [c.logistic_order_id for c in done.captures] == ["lo_2"]
    assert [c.logistic_order_id for c in repo.captures.values()] == ["lo_2"]


@pytest.mark.parametrize(
    ("status", "code", "retry_after"),
    [
        ("CREATED", "payment_not_yet_capturable", 1),
        ("CANCELLED", "payment_not_capturable", None),
        ("REFUSED", "payment_not_capturable", None),
    ],
)
async def test_manual_capture_of_a_payment_not_authorised_says_whether_to_ask_again(
    status, code, retry_after
):
    # given
    repo = repo_with(capture_mode="MANUAL", status=status)
    # when
    with pytest.raises(Conflict) as refused:
        await operators.manual_capture(repo, TENANT, "pay_1", None, now=NOW, ids=ids())
    # then
    assert (refused.value.code, refused.value.retry_after) == (code, retry_after)
    assert repo.captures == {}


async def test_manual_capture_reopens_a_blocked_capture_once_its_supplier_is_known():
    # given lo_1 blocked: its supplier was not known when SHIPPED came
    repo = repo_with(suppliers=("sup_2",))
    source = ids()
    await oms.on_logistic_order_event(repo, "m1", shipped(), now=NOW, ids=source)
    [blocked] = repo.captures.values()
    repo.add_supplier(supplier_upserted(TENANT, "sup_1", commission_rate="12.5"))
    later = NOW + timedelta(minutes=5)
    # when the operator captures the payment
    done = await operators.manual_capture(repo, TENANT, "pay_1", "lo_1", now=later, ids=source)
    # then the same capture goes to the PSP under a new key, with the split of now
    [reopened] = done.captures
    assert reopened.id == blocked.id
    assert (reopened.status, reopened.generation, reopened.revision) == (
        CaptureStatus.PENDING,
        2,
        2,
    )
    assert reopened.next_attempt_at == later
    assert reopened.marketplace_rate == Decimal("12.5")
    assert reopened.block_code is None
    assert [i.status for i in repo.interventions.values()] == ["RETRIED"]
    assert [e.type for e in repo.events] == [
        EventType.CAPTURE_BLOCKED,
        EventType.CAPTURE_REQUESTED,
    ]


async def test_shipped_after_adm_pay_101_finds_the_capture_there():
    # given ADM-PAY-101 won the race
    repo = repo_with()
    await operators.manual_capture(repo, TENANT, "pay_1", "lo_1", now=NOW, ids=ids())
    # when SHIPPED comes
    outcome = await oms.on_logistic_order_event(repo, "m1", shipped(), now=NOW, ids=ids())
    # then
    assert (outcome.outcome, outcome.reason) == ("ignored", "capture_exists")
    assert len(repo.captures) == 1
    assert len(repo.events) == 1
