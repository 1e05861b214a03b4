"""Capture's SQL: `PgRepo` implements `capture.repository` on the connection of the caller's
transaction. Loads return typed domain objects; no `asyncpg.Record` leaves this module. Each
save writes a decision in one statement (several decisions: one pipelined `executemany`, or
one set-based statement) and enqueues its events with `enqueue_many`.

Locks are always taken in the order payment → capture → intervention, whichever use case
takes them, so two use cases never wait for each other in a cycle.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeAlias, cast

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from capture.domain import (
    IDEMPOTENCY_KEY_FORMAT,
    Capture,
    CaptureChange,
    CaptureStatus,
    DomainEvent,
    Lease,
    Line,
    NewCapture,
    Payment,
    SplitLine,
    Tenancy,
    Trigger,
)
from capture.repository import Intervention, Schedule
from capture.shipment_domain import (
    OmsOutcome,
    Resolution,
    ShipmentDecision,
    ShipmentLine,
    WaitingShipment,
)
from common.broker import enqueue_many, new_envelope
from common.broker.outbox import outbox_insert, outbox_values
from common.events import (
    Envelope,
    Level3Data,
    LogisticOrderStatusChanged,
    SupplierUpserted,
)
from common.money import parse_rate
from common.tenancy import tenant_settings

Row: TypeAlias = "asyncpg.Record"
Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
"""A connection, or the pool's proxy of one (what `pool.acquire()` gives)."""

_CAPTURE = (
    "c.*, (SELECT i.id FROM interventions i WHERE i.capture_id = c.id AND i.status = 'OPEN')"
    " AS open_intervention_id"
)


def _rate(value: Any) -> Decimal | None:
    return None if value is None else parse_rate(value)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def capture_of(row: Row) -> Capture:
    """A capture row (of `captures`, optionally with `open_intervention_id`) as the domain
    object; also for the list endpoint's rows."""
    return Capture(
        id=row["id"],
        tenant_id=row["tenant_id"],
        payment_id=row["payment_id"],
        order_id=row["order_id"],
        logistic_order_id=row["logistic_order_id"],
        supplier_id=row["supplier_id"],
        amount=row["amount"],
        currency=row["currency"],
        trigger=cast(Trigger, row["trigger"]),
        status=CaptureStatus(row["status"]),
        revision=row["revision"],
        platform_rate=_rate(row["platform_rate"]),
        marketplace_rate=_rate(row["marketplace_rate"]),
        splits=tuple(
            SplitLine(s["party"], int(s["amount"]), _rate(s["rate"])) for s in row["splits"]
        ),
        additional_data=row["additional_data"],
        payment_psp_reference=row["payment_psp_reference"],
        merchant_account=row["merchant_account"],
        block_code=row["block_code"],
        block_message=row["block_message"],
        failure_code=row["failure_code"],
        failure_reason=row["failure_reason"],
        outcome_known=row["outcome_known"],
        generation=row["generation"],
        attempts=row["attempts"],
        round_attempts=row["round_attempts"],
        next_attempt_at=row["next_attempt_at"],
        psp_reference=row["psp_reference"],
        succeeded_at=row["succeeded_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        open_intervention_id=row.get("open_intervention_id"),
    )


def intervention_of(row: Row) -> Intervention:
    """An intervention row joined with its capture's payment and logistic order."""
    return Intervention(
        id=row["id"],
        tenant_id=row["tenant_id"],
        capture_id=row["capture_id"],
        payment_id=row["payment_id"],
        logistic_order_id=row["logistic_order_id"],
        kind=row["kind"],
        code=row["code"],
        reason=row["reason"],
        status=row["status"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        closed_at=row["closed_at"],
    )


def _payment(row: Row) -> Payment:
    level3 = row["level3"]
    return Payment(
        tenant_id=row["tenant_id"],
        payment_id=row["payment_id"],
        order_id=row["order_id"],
        payment_option=row["payment_option"],
        status=row["status"],
        capture_mode=row["capture_mode"],
        amount=row["amount"],
        currency=row["currency"],
        psp_reference=row["psp_reference"],
        merchant_account=row["merchant_account"],
        level3=Level3Data.model_validate(level3) if level3 is not None else None,
    )


def _splits_json(lines: Sequence[SplitLine]) -> str:
    return json.dumps(
        [{"party": x.party, "amount": x.amount, "rate": _text(x.rate)} for x in lines]
    )


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


_INSERT_CAPTURES = """
WITH v AS (
    SELECT * FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[],
        $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
        $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::timestamptz[],
        $20::timestamptz[], $21::text[], $22::text[], $23::text[], $24::text[], $25::text[],
        $26::text[]
    ) AS v(id, tenant_id, payment_id, order_id, logistic_order_id, supplier_id, amount,
           currency, trigger, status, platform_rate, marketplace_rate, splits, additional_data,
           payment_psp_reference, merchant_account, block_code, block_message, next_attempt_at,
           succeeded_at, source, detail, intervention_id, intervention_kind, intervention_code,
           intervention_reason)
), c AS (
    INSERT INTO captures (id, tenant_id, payment_id, order_id, logistic_order_id, supplier_id,
                          amount, currency, trigger, status, platform_rate, marketplace_rate,
                          splits, additional_data, payment_psp_reference, merchant_account,
                          block_code, block_message, next_attempt_at, succeeded_at)
    SELECT id, tenant_id, payment_id, order_id, logistic_order_id, supplier_id, amount,
           currency, trigger, status, platform_rate::numeric, marketplace_rate::numeric,
           splits::jsonb, additional_data::jsonb, payment_psp_reference, merchant_account,
           block_code, block_message, next_attempt_at, succeeded_at
      FROM v
    ON CONFLICT (tenant_id, payment_id, logistic_order_id) DO NOTHING
    RETURNING id, generation, created_at, updated_at
), h AS (
    INSERT INTO capture_history (capture_id, status_from, status_to, source, detail)
    SELECT v.id, NULL, v.status, v.source, v.detail::jsonb FROM v JOIN c USING (id)
), i AS (
    INSERT INTO interventions (id, tenant_id, capture_id, kind, code, reason, status)
    SELECT v.intervention_id, v.tenant_id, v.id, v.intervention_kind, v.intervention_code,
           v.intervention_reason, 'OPEN'
      FROM v JOIN c USING (id)
     WHERE v.intervention_id IS NOT NULL
)
SELECT id, created_at, updated_at FROM c
"""

_INSERT_CAPTURE_AND_OMS_EVENT = _INSERT_CAPTURES.replace(
    "\nSELECT id, created_at, updated_at FROM c\n",
    """, e AS (
    INSERT INTO logistic_order_events (id, oms_event_id, tenant_id, order_id,
        logistic_order_id, supplier_id, status, occurred_at, outcome, reason, payment_id,
        capture_id)
    SELECT $27, $28, $29, $30, $31, $32, $33, $34,
           CASE WHEN EXISTS (SELECT 1 FROM c) THEN $35::text ELSE 'ignored' END,
           CASE WHEN EXISTS (SELECT 1 FROM c) THEN $36::text ELSE 'capture_exists' END,
           $37, (SELECT id FROM c LIMIT 1)
    ON CONFLICT (id) DO NOTHING
)
SELECT id, created_at, updated_at FROM c
""",
)
"""A SHIPPED's capture and the OMS event that made it, in one statement: if the line had its
capture already (a trigger that committed while this one waited for the payment's lock), the
event is recorded as `capture_exists`, as the decision would have said had it seen it."""

_INSERT_CAPTURE_OMS_EVENT_AND_EVENTS = _INSERT_CAPTURE_AND_OMS_EVENT.replace(
    "\nSELECT id, created_at, updated_at FROM c\n",
    f", o AS ({outbox_insert(38, where='WHERE EXISTS (SELECT 1 FROM c)')})"
    "\nSELECT id, created_at, updated_at FROM c\n",
)
"""`_INSERT_CAPTURE_AND_OMS_EVENT` for one capture, with its events ($38-$42) written only if
the capture was."""

_INSERT_LEASED_CAPTURE_OMS_EVENT_AND_EVENTS = (
    _INSERT_CAPTURE_OMS_EVENT_AND_EVENTS.replace(
        "block_code, block_message, next_attempt_at, succeeded_at)",
        "block_code, block_message, next_attempt_at, succeeded_at, lease_until, lease_token,"
        " attempts, round_attempts)",
        1,
    )
    .replace(
        "block_code, block_message, next_attempt_at, succeeded_at\n      FROM v",
        "block_code, block_message, next_attempt_at, succeeded_at, $43::timestamptz,"
        " $44::uuid, 1, 1\n      FROM v",
        1,
    )
    .replace(
        "\nSELECT id, created_at, updated_at FROM c\n",
        """, l AS (
    INSERT INTO capture_attempts (capture_id, attempt, generation, idempotency_key, started_at)
    SELECT id, 1, generation, format($46, id, generation), $45 FROM c
)
SELECT id, created_at, updated_at FROM c
""",
    )
)
"""`_INSERT_CAPTURE_OMS_EVENT_AND_EVENTS` for a capture leased as it is created (`Lease`:
$43-$45; $46 the key format): its first attempt recorded, as `claim_due` would have."""

_INSERT_OMS_EVENT = """
INSERT INTO logistic_order_events (id, oms_event_id, tenant_id, order_id, logistic_order_id,
    supplier_id, status, occurred_at, outcome, reason, payment_id, capture_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (id) DO NOTHING
"""

_SAVE_CHANGE = """
WITH u AS (
    UPDATE captures
       SET status = $2, revision = $3, platform_rate = $4::numeric,
           marketplace_rate = $5::numeric, splits = $6::text::jsonb,
           additional_data = $7::text::jsonb,
           block_code = $8, block_message = $9, failure_code = $10, failure_reason = $11,
           outcome_known = $12, generation = $13, round_attempts = $14, next_attempt_at = $15,
           psp_reference = $16, succeeded_at = $17,
           lease_until = CASE WHEN lease_token = $18::uuid THEN NULL ELSE lease_until END,
           lease_token = CASE WHEN lease_token = $18::uuid THEN NULL ELSE lease_token END,
           updated_at = now()
     WHERE id = $1
    RETURNING id, status, created_at, updated_at
), h AS (
    INSERT INTO capture_history (capture_id, status_from, status_to, source, detail)
    SELECT id, $19, status, $20, $21::text::jsonb FROM u
), a AS (
    UPDATE capture_attempts
       SET finished_at = $22, outcome = $23, code = $24, detail = $25, psp_reference = $26
     WHERE capture_id = $1 AND attempt = $27::integer
), x AS (
    UPDATE interventions SET status = $28::text, closed_at = now(), updated_at = now()
     WHERE capture_id = $1 AND status = 'OPEN' AND $28::text IS NOT NULL
), i AS (
    INSERT INTO interventions (id, tenant_id, capture_id, kind, code, reason, status)
    SELECT $29::text, $30, $1, $31, $32, $33, 'OPEN' WHERE $29::text IS NOT NULL
)
SELECT created_at, updated_at FROM u
"""

_SAVE_CHANGE_AND_EVENTS = _SAVE_CHANGE.replace(
    "\nSELECT created_at, updated_at FROM u\n",
    f", o AS ({outbox_insert(34)})\nSELECT created_at, updated_at FROM u\n",
)
"""`_SAVE_CHANGE` with the change's events ($34-$38), in the same statement."""


def _oms_event_values(
    message_id: str, event: LogisticOrderStatusChanged, outcome: OmsOutcome
) -> tuple[Any, ...]:
    """A logistic_order_events row's columns id .. payment_id, in the statements' order."""
    return (
        message_id,
        event.id,
        event.tenant_id,
        event.order_id,
        event.logistic_order_id,
        event.supplier_id,
        event.status,
        event.occurred_at,
        outcome.outcome,
        outcome.reason,
        outcome.payment_id,
    )


def _envelopes(events: Sequence[DomainEvent]) -> list[tuple[Envelope, str | None]]:
    """Each event as a new envelope with its aggregate, for the outbox."""
    return [(new_envelope(e.type, e.data, tenant_id=e.tenant_id), e.aggregate_id) for e in events]


def _capture_columns(new: Sequence[NewCapture]) -> list[list[Any]]:
    """`_INSERT_CAPTURES`'s 26 arrays ($1-$26) for `new`."""
    columns: list[list[Any]] = [[] for _ in range(26)]
    for n in new:
        c, i = n.capture, n.intervention
        values = (
            c.id,
            c.tenant_id,
            c.payment_id,
            c.order_id,
            c.logistic_order_id,
            c.supplier_id,
            c.amount,
            c.currency,
            c.trigger,
            c.status.value,
            _text(c.platform_rate),
            _text(c.marketplace_rate),
            _splits_json(c.splits),
            _json(dict(c.additional_data) if c.additional_data is not None else None),
            c.payment_psp_reference,
            c.merchant_account,
            c.block_code,
            c.block_message,
            c.next_attempt_at,
            c.succeeded_at,
            n.history.source,
            json.dumps(dict(n.history.detail)),
            i.id if i else None,
            i.kind if i else None,
            i.code if i else None,
            i.reason if i else None,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns


def _change_args(change: CaptureChange) -> tuple[Any, ...]:
    c = change.capture
    a = change.attempt
    i = change.intervention
    return (
        c.id,
        c.status.value,
        c.revision,
        _text(c.platform_rate),
        _text(c.marketplace_rate),
        _splits_json(c.splits),
        _json(dict(c.additional_data) if c.additional_data is not None else None),
        c.block_code,
        c.block_message,
        c.failure_code,
        c.failure_reason,
        c.outcome_known,
        c.generation,
        c.round_attempts,
        c.next_attempt_at,
        c.psp_reference,
        c.succeeded_at,
        a.lease_token if a else None,
        change.status_from.value,
        change.history.source,
        json.dumps(dict(change.history.detail)),
        a.now if a else None,
        a.outcome if a else None,
        a.code if a else None,
        a.detail if a else None,
        a.psp_reference if a else None,
        a.attempt if a else None,
        change.close_interventions,
        i.id if i else None,
        c.tenant_id,
        i.kind if i else None,
        i.code if i else None,
        i.reason if i else None,
    )


def _shipment(
    event: LogisticOrderStatusChanged, rows: Sequence[asyncpg.Record]
) -> tuple[Tenancy, list[ShipmentLine]]:
    """One event's rows of `PgRepo.load_shipments` (at least one: the joins are outer)."""
    first = rows[0]
    if first["tenant_data"] is None:
        return Tenancy(None, {}), []
    supplier = first["supplier_data"]
    tenancy = Tenancy(
        tenant_settings(first["tenant_data"]),
        {event.supplier_id: SupplierUpserted.model_validate(supplier)} if supplier else {},
    )
    return tenancy, [
        ShipmentLine(
            _payment(r),
            Line(r["logistic_order_id"], r["line_supplier_id"], r["line_amount"]),
            r["capture_id"],
        )
        for r in rows
        if r["payment_id"] is not None
    ]


class PgRepo:
    """The repository on one connection, inside the caller's transaction."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn
        self._deferred: list[tuple[Any, ...]] = []
        self._deferred_shipments: list[tuple[str, tuple[Any, ...], OmsOutcome, str | None]] = []

    # -- events --------------------------------------------------------------------------

    @staticmethod
    def _outbox_values(events: Sequence[DomainEvent]) -> tuple[Any, ...]:
        """`outbox_insert`'s parameters for `events` (new envelopes)."""
        return outbox_values(_envelopes(events))

    async def _enqueue(self, events: Sequence[DomainEvent]) -> None:
        await enqueue_many(
            # common.broker is typed for a Connection; the pool's proxy behaves as one
            cast("asyncpg.Connection[asyncpg.Record]", self._conn),
            _envelopes(events),
        )

    # -- replicas ------------------------------------------------------------------------

    async def tenancy(self, tenant_id: str, supplier_ids: Sequence[str]) -> Tenancy:
        """The tenant's replica and those of the suppliers named (the known ones), at once."""
        rows = await self._conn.fetch(
            """
            SELECT t.data AS tenant, s.supplier_id, s.data AS supplier
              FROM replica_tenants t
              LEFT JOIN replica_suppliers s
                ON s.tenant_id = t.tenant_id AND s.supplier_id = ANY($2::text[])
             WHERE t.tenant_id = $1
            """,
            tenant_id,
            list(supplier_ids),
        )
        if not rows:
            return Tenancy(None, {})
        suppliers = {
            r["supplier_id"]: SupplierUpserted.model_validate(r["supplier"])
            for r in rows
            if r["supplier_id"]
        }
        return Tenancy(tenant_settings(rows[0]["tenant"]), suppliers)

    # -- payments ------------------------------------------------------------------------

    async def insert_created_payment(self, payment: Payment, lines: Sequence[Line]) -> None:
        inserted = await self._conn.fetchval(
            """
            INSERT INTO payments (tenant_id, payment_id, order_id, payment_option, status,
                                  amount, currency)
            VALUES ($1, $2, $3, $4, 'CREATED', $5, $6)
            ON CONFLICT (tenant_id, payment_id) DO NOTHING
            RETURNING true
            """,
            payment.tenant_id,
            payment.payment_id,
            payment.order_id,
            payment.payment_option,
            payment.amount,
            payment.currency,
        )
        if inserted:
            await self._insert_lines(payment, lines)

    async def _insert_lines(self, payment: Payment, lines: Sequence[Line]) -> None:
        await self._conn.executemany(
            "INSERT INTO payment_lines (tenant_id, payment_id, order_id, logistic_order_id,"
            " supplier_id, amount) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            [
                (
                    payment.tenant_id,
                    payment.payment_id,
                    payment.order_id,
                    x.logistic_order_id,
                    x.supplier_id,
                    x.amount,
                )
                for x in lines
            ],
        )

    async def upsert_authorised_payment(
        self, payment: Payment, lines: Sequence[Line], authorised_at: datetime
    ) -> Payment | None:
        row = await self._conn.fetchrow(
            """
            INSERT INTO payments (tenant_id, payment_id, order_id, payment_option, status,
                                  capture_mode, amount, currency, psp_reference,
                                  merchant_account, level3, authorised_at)
            VALUES ($1, $2, $3, $4, 'AUTHORISED', $5, $6, $7, $8, $9, $10, $11)
            ON CONFLICT (tenant_id, payment_id) DO UPDATE
               SET status = 'AUTHORISED', capture_mode = EXCLUDED.capture_mode,
                   psp_reference = EXCLUDED.psp_reference,
                   merchant_account = EXCLUDED.merchant_account, level3 = EXCLUDED.level3,
                   authorised_at = EXCLUDED.authorised_at, updated_at = now()
             WHERE payments.status IN ('CREATED', 'AUTHORISED')
            RETURNING *
            """,
            payment.tenant_id,
            payment.payment_id,
            payment.order_id,
            payment.payment_option,
            payment.capture_mode,
            payment.amount,
            payment.currency,
            payment.psp_reference,
            payment.merchant_account,
            payment.level3.model_dump(mode="json") if payment.level3 else None,
            authorised_at,
        )
        if row is None:
            return None
        await self._insert_lines(payment, lines)
        return _payment(row)

    async def close_payment(self, payment: Payment) -> None:
        """A cancelled or refused payment is never captured (a known one, or a first sight)."""
        await self._conn.execute(
            """
            INSERT INTO payments (tenant_id, payment_id, order_id, payment_option, status,
                                  amount, currency, psp_reference)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
            ON CONFLICT (tenant_id, payment_id) DO UPDATE
               SET status = EXCLUDED.status, updated_at = now()
            """,
            payment.tenant_id,
            payment.payment_id,
            payment.order_id,
            payment.payment_option,
            payment.status,
            payment.amount,
            payment.currency,
            payment.psp_reference,
        )

    async def lock_payment(self, tenant_id: str, payment_id: str) -> Payment | None:
        row = await self._conn.fetchrow(
            "SELECT * FROM payments WHERE tenant_id = $1 AND payment_id = $2 FOR NO KEY UPDATE",
            tenant_id,
            payment_id,
        )
        return _payment(row) if row is not None else None

    async def lines_of(self, tenant_id: str, payment_id: str) -> list[Line]:
        rows = await self._conn.fetch(
            "SELECT logistic_order_id, supplier_id, amount FROM payment_lines"
            " WHERE tenant_id = $1 AND payment_id = $2 ORDER BY logistic_order_id",
            tenant_id,
            payment_id,
        )
        return [Line(r["logistic_order_id"], r["supplier_id"], r["amount"]) for r in rows]

    async def load_shipments(
        self, events: Sequence[LogisticOrderStatusChanged]
    ) -> list[tuple[Tenancy, list[ShipmentLine]]]:
        """For each event: the tenancy replicas (tenant, the event's supplier) and, for a
        SHIPPED of a known tenant, every payment line of the logistic order with its payment
        (locked) and the line's capture. All an OMS event needs, for a batch of them in one
        query; each event's lines are found through the indexes as alone (LATERAL), and
        their payments locked in the events' order."""
        # (SELECT $n) hides the arrays' lengths from the planner: the plan no longer depends on
        # them, so PostgreSQL reuses one generic plan instead of planning every call (~0.6 ms).
        rows = await self._conn.fetch(
            """
            SELECT k.n, t.data AS tenant_data, s.data AS supplier_data, x.*
              FROM unnest((SELECT $1::text[]), (SELECT $2::text[]), (SELECT $3::text[]),
                          (SELECT $4::text[]), (SELECT $5::boolean[]))
                   WITH ORDINALITY AS k(tenant_id, order_id, logistic_order_id, supplier_id,
                                        shipped, n)
              LEFT JOIN replica_tenants t ON t.tenant_id = k.tenant_id
              LEFT JOIN replica_suppliers s
                ON s.tenant_id = k.tenant_id AND s.supplier_id = k.supplier_id
              LEFT JOIN LATERAL (
                    SELECT p.*, l.logistic_order_id, l.supplier_id AS line_supplier_id,
                           l.amount AS line_amount, c.id AS capture_id
                      FROM payment_lines l
                      JOIN payments p USING (tenant_id, payment_id)
                      LEFT JOIN captures c
                        ON c.tenant_id = l.tenant_id AND c.payment_id = l.payment_id
                       AND c.logistic_order_id = l.logistic_order_id
                     WHERE l.tenant_id = k.tenant_id AND l.order_id = k.order_id
                       AND l.logistic_order_id = k.logistic_order_id
                       AND k.shipped AND t.tenant_id IS NOT NULL
                     ORDER BY p.payment_id
                       FOR NO KEY UPDATE OF p
                   ) x ON true
             ORDER BY k.n, x.payment_id
            """,
            [e.tenant_id for e in events],
            [e.order_id for e in events],
            [e.logistic_order_id for e in events],
            [e.supplier_id for e in events],
            [e.status == "SHIPPED" for e in events],
        )
        by_event: list[list[asyncpg.Record]] = [[] for _ in events]
        for row in rows:
            by_event[row["n"] - 1].append(row)
        return [_shipment(event, found) for event, found in zip(events, by_event, strict=True)]

    # -- captures ------------------------------------------------------------------------

    async def save_new_captures(self, new: Sequence[NewCapture]) -> list[Capture]:
        """The captures, their first history entries, the interventions of the blocked ones
        (one statement), then the events of those inserted. A line that has a capture
        already (a trigger that committed while this one waited for the payment's lock,
        after its read) is skipped with its history, intervention and events: the captures
        returned are the ones this call created."""
        if not new:
            return []
        rows = await self._conn.fetch(_INSERT_CAPTURES, *_capture_columns(new))
        stamps = {r["id"]: (r["created_at"], r["updated_at"]) for r in rows}
        await self._enqueue([e for n in new if n.capture.id in stamps for e in n.events])
        return [_stamped(n.capture, *stamps[n.capture.id]) for n in new if n.capture.id in stamps]

    async def save_shipment(
        self,
        message_id: str,
        event: LogisticOrderStatusChanged,
        decision: ShipmentDecision,
        *,
        lease: Lease | None = None,
    ) -> OmsOutcome:
        """The OMS event with what it did and, when it made one, its capture with its event
        (and, given a `lease`, leased for its first attempt): one statement. Returns the
        outcome as recorded. (`defer_shipment` and `save_deferred_shipments` for one.)"""
        self.defer_shipment(message_id, event, decision, lease=lease)
        [outcome] = await self.save_deferred_shipments()
        return outcome

    def defer_shipment(
        self,
        message_id: str,
        event: LogisticOrderStatusChanged,
        decision: ShipmentDecision,
        *,
        lease: Lease | None = None,
    ) -> None:
        """The statement of `save_shipment`, sent later with the others deferred
        (`save_deferred_shipments`). The capture's events get their envelopes now, with the
        correlation and the cause of the message being handled."""
        if decision.capture is None:
            args: tuple[Any, ...] = (
                *_oms_event_values(message_id, event, decision.outcome),
                decision.outcome.capture_id,
            )
            self._deferred_shipments.append((_INSERT_OMS_EVENT, args, decision.outcome, None))
            return
        leased: tuple[Any, ...] = ()
        if lease is not None:
            leased = (lease.until, lease.token, lease.started_at, IDEMPOTENCY_KEY_FORMAT)
        sql = (
            _INSERT_LEASED_CAPTURE_OMS_EVENT_AND_EVENTS
            if lease is not None
            else _INSERT_CAPTURE_OMS_EVENT_AND_EVENTS
        )
        args = (
            *_capture_columns([decision.capture]),
            *_oms_event_values(message_id, event, decision.outcome),
            *self._outbox_values(decision.capture.events),
            *leased,
        )
        self._deferred_shipments.append((sql, args, decision.outcome, decision.capture.capture.id))

    async def save_deferred_shipments(self) -> list[OmsOutcome]:
        """Save the deferred shipments, one pipelined round trip per statement (those that
        make a capture leased, not leased, or none), and return each one's outcome as
        recorded, in the order they were deferred. The shipments of one batch are about
        different lines (a batch saves before it loads a line again), so their statements
        don't depend on each other's order."""
        deferred, self._deferred_shipments = self._deferred_shipments, []
        created: set[str] = set()
        for sql in dict.fromkeys(sql for sql, *_ in deferred):
            args = [a for s, a, _, _ in deferred if s == sql]
            if sql == _INSERT_OMS_EVENT:
                await self._conn.executemany(sql, args)
            else:
                created.update(r["id"] for r in await self._conn.fetchmany(sql, args))
        return [
            outcome
            if capture_id is None or capture_id in created
            else replace(outcome, outcome="ignored", reason="capture_exists", capture_id=None)
            for _, _, outcome, capture_id in deferred
        ]

    async def save_change(self, change: CaptureChange) -> Capture:
        """The capture's new columns, its history entry, the PSP attempt it finishes (the
        lease released only if that attempt still holds it), its interventions: one
        statement; then its events."""
        if change.events:
            row = await self._conn.fetchrow(
                _SAVE_CHANGE_AND_EVENTS,
                *_change_args(change),
                *self._outbox_values(change.events),
            )
        else:
            row = await self._conn.fetchrow(_SAVE_CHANGE, *_change_args(change))
        if row is None:
            raise LookupError(f"no capture {change.capture.id}")
        return _stamped(change.capture, row["created_at"], row["updated_at"])

    async def save_changes(self, changes: Sequence[CaptureChange]) -> None:
        """`save_change` for a batch: one pipelined round trip, events included."""
        for change in changes:
            self.defer_change(change)
        await self.save_deferred()

    def defer_change(self, change: CaptureChange) -> None:
        """`save_change` later, with the others deferred, in one round trip
        (`save_deferred`). The change's events get their envelopes now, with the correlation
        and the cause of the message being handled."""
        self._deferred.append((*_change_args(change), *self._outbox_values(change.events)))

    async def save_deferred(self) -> None:
        """Save the deferred changes, in the order they were deferred: one pipelined round
        trip."""
        if self._deferred:
            await self._conn.executemany(_SAVE_CHANGE_AND_EVENTS, self._deferred)
            self._deferred.clear()

    async def captures_of_payment(
        self, tenant_id: str, payment_id: str, *, lock: bool = False
    ) -> dict[str, Capture]:
        rows = await self._conn.fetch(
            f"SELECT {_CAPTURE} FROM captures c WHERE c.tenant_id = $1 AND c.payment_id = $2"
            " ORDER BY c.id" + (" FOR NO KEY UPDATE OF c" if lock else ""),
            tenant_id,
            payment_id,
        )
        return {r["logistic_order_id"]: capture_of(r) for r in rows}

    async def capture(
        self, capture_id: str, *, tenant_id: str | None = None, lock: bool = False
    ) -> Capture | None:
        row = await self._conn.fetchrow(
            f"SELECT {_CAPTURE} FROM captures c"
            " WHERE c.id = $1 AND ($2::text IS NULL OR c.tenant_id = $2)"
            + (" FOR NO KEY UPDATE OF c" if lock else ""),
            capture_id,
            tenant_id,
        )
        return capture_of(row) if row is not None else None

    async def lock_captures(
        self, capture_ids: Sequence[str], *, skip_locked: bool = False
    ) -> dict[str, Capture]:
        """The captures named, locked in id order (a batch of PSP answers); with
        `skip_locked`, without those another transaction holds (no wait, so no deadlock)."""
        # (SELECT $1): the plan doesn't depend on the array's length, so one generic plan
        # serves every batch (`load_shipments`); the cast keeps it an array expression
        # (`= ANY((SELECT ...))` alone would read as ANY of a subquery's rows)
        rows = await self._conn.fetch(
            f"SELECT {_CAPTURE} FROM captures c WHERE c.id = ANY((SELECT $1::text[])::text[])"
            " ORDER BY c.id FOR NO KEY UPDATE OF c" + (" SKIP LOCKED" if skip_locked else ""),
            list(capture_ids),
        )
        return {r["id"]: capture_of(r) for r in rows}

    async def waiting_captures_for_psp_reference(
        self, tenant_id: str, payment_psp_reference: str, amount: int
    ) -> list[Capture]:
        rows = await self._conn.fetch(
            f"SELECT {_CAPTURE} FROM captures c WHERE c.tenant_id = $1"
            " AND c.payment_psp_reference = $2 AND c.amount = $3"
            " AND c.status IN ('PENDING', 'SENT') ORDER BY c.id FOR NO KEY UPDATE OF c",
            tenant_id,
            payment_psp_reference,
            amount,
        )
        return [capture_of(r) for r in rows]

    async def history_of(self, capture_id: str) -> list[dict[str, Any]]:
        rows = await self._conn.fetch(
            "SELECT occurred_at, status_from, status_to, source, detail FROM capture_history"
            " WHERE capture_id = $1 ORDER BY seq",
            capture_id,
        )
        return [dict(r) for r in rows]

    async def attempts_of(self, capture_id: str) -> list[dict[str, Any]]:
        rows = await self._conn.fetch(
            "SELECT * FROM capture_attempts WHERE capture_id = $1 ORDER BY attempt", capture_id
        )
        return [dict(r) for r in rows]

    # -- the executor --------------------------------------------------------------------

    async def claim_due(
        self, *, now: datetime, lease_until: datetime, limit: int
    ) -> list[tuple[Capture, uuid.UUID]]:
        """Lease up to `limit` due captures and record the attempt each is about to make
        (its PSP key formatted from `domain.IDEMPOTENCY_KEY_FORMAT`), in one statement
        (FOR NO KEY UPDATE SKIP LOCKED: replicas never claim the same one)."""
        rows = await self._conn.fetch(
            """
            WITH due AS (
                SELECT id FROM captures
                 WHERE status = 'PENDING' AND next_attempt_at <= $1
                   AND (lease_until IS NULL OR lease_until <= $1)
                 ORDER BY next_attempt_at
                 LIMIT $3
                   FOR NO KEY UPDATE SKIP LOCKED
            ), claimed AS (
                UPDATE captures c
                   SET lease_until = $2, lease_token = gen_random_uuid(),
                       attempts = c.attempts + 1, round_attempts = c.round_attempts + 1,
                       updated_at = now()
                  FROM due
                 WHERE c.id = due.id
                RETURNING c.*
            ), attempt AS (
                INSERT INTO capture_attempts (capture_id, attempt, generation, idempotency_key,
                                              started_at)
                SELECT id, attempts, generation, format($4, id, generation), $1
                  FROM claimed
            )
            SELECT * FROM claimed
            """,
            now,
            lease_until,
            limit,
            IDEMPOTENCY_KEY_FORMAT,
        )
        return [(capture_of(r), r["lease_token"]) for r in rows]

    # -- interventions -------------------------------------------------------------------

    async def intervention(
        self, tenant_id: str, intervention_id: str, *, lock: bool = False
    ) -> Intervention | None:
        row = await self._conn.fetchrow(
            "SELECT i.*, c.payment_id, c.logistic_order_id FROM interventions i"
            " JOIN captures c ON c.id = i.capture_id"
            " WHERE i.id = $1 AND i.tenant_id = $2" + (" FOR UPDATE OF i" if lock else ""),
            intervention_id,
            tenant_id,
        )
        return intervention_of(row) if row is not None else None

    # -- schedules -----------------------------------------------------------------------

    async def schedule(
        self, tenant_id: str, payment_id: str, due_at: datetime, event: DomainEvent
    ) -> bool:
        inserted = await self._conn.fetchval(
            "INSERT INTO scheduled_captures (tenant_id, payment_id, due_at) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING RETURNING true",
            tenant_id,
            payment_id,
            due_at,
        )
        if inserted:
            await self._enqueue([event])
        return bool(inserted)

    async def claim_due_schedules(self, now: datetime, limit: int) -> list[Schedule]:
        rows = await self._conn.fetch(
            "SELECT tenant_id, payment_id, due_at FROM scheduled_captures"
            " WHERE status = 'SCHEDULED' AND due_at <= $1 ORDER BY due_at LIMIT $2"
            " FOR UPDATE SKIP LOCKED",
            now,
            limit,
        )
        return [Schedule(r["tenant_id"], r["payment_id"], r["due_at"]) for r in rows]

    async def finish_schedule(self, schedule: Schedule, status: str, outcome: str) -> None:
        await self._conn.execute(
            "UPDATE scheduled_captures SET status = $3, outcome = $4, done_at = now()"
            " WHERE tenant_id = $1 AND payment_id = $2",
            schedule.tenant_id,
            schedule.payment_id,
            status,
            outcome,
        )

    # -- OMS events ----------------------------------------------------------------------

    async def shipments_waiting(self, tenant_id: str, order_id: str) -> list[WaitingShipment]:
        """SHIPPED events of this order that found no authorised payment when they came."""
        rows = await self._conn.fetch(
            """
            SELECT id, logistic_order_id, supplier_id FROM logistic_order_events
             WHERE tenant_id = $1 AND order_id = $2 AND status = 'SHIPPED'
               AND (outcome = 'awaiting_authorisation'
                    OR (outcome = 'ignored' AND reason = 'logistic_order_unknown'))
             ORDER BY occurred_at
               FOR UPDATE
            """,
            tenant_id,
            order_id,
        )
        return [WaitingShipment(r["id"], r["logistic_order_id"], r["supplier_id"]) for r in rows]

    async def resolve_logistic_order_events(self, resolutions: Sequence[Resolution]) -> None:
        if not resolutions:
            return
        await self._conn.executemany(
            "UPDATE logistic_order_events SET outcome = $2, reason = $3, payment_id = $4,"
            " capture_id = $5, updated_at = now() WHERE id = $1",
            [
                (
                    r.event_id,
                    r.outcome.outcome,
                    r.outcome.reason,
                    r.outcome.payment_id,
                    r.outcome.capture_id,
                )
                for r in resolutions
            ],
        )


def _stamped(capture: Capture, created_at: datetime, updated_at: datetime) -> Capture:
    return replace(capture, created_at=created_at, updated_at=updated_at)
