"""What tests of payouts (and of services that talk to it) use to play its neighbours:
capture's, the OMS's and checkout's events, built as their producers build them."""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aio_pika
import aiohttp
import asyncpg
from aio_pika.abc import AbstractExchange
from aiohttp import web

from common.broker import Names
from common.events import (
    OMS_STATUS_CHANGED,
    BankingMode,
    CaptureSucceeded,
    ChargebackEvent,
    EventData,
    EventType,
    FundingPolicy,
    KycStatus,
    LogisticOrderStatusChanged,
    PaymentStatusChanged,
    RefundFailed,
    RefundRequested,
    RefundSucceeded,
    ReturnLine,
    Role,
    SplitLineData,
    TenantUpserted,
    make_envelope,
)
from common.http.auth import generate_key
from common.money import percent_of
from common.runtime import DB_POOL
from common.testing.tenancy import api_key_upserted, supplier_upserted, tenant_upserted
from common.testing.waiting import eventually


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def capture_succeeded(
    *,
    supplier_id: str,
    amount: int,
    platform_rate: str = "2.5",
    marketplace_rate: str = "10",
    currency: str = "EUR",
    payment_id: str | None = None,
    order_id: str | None = None,
    logistic_order_id: str | None = None,
    capture_id: str | None = None,
) -> CaptureSucceeded:
    """A capture split as capture splits it (DESIGN §6)."""
    from decimal import Decimal

    platform = percent_of(amount, Decimal(platform_rate))
    marketplace = percent_of(amount, Decimal(marketplace_rate))
    return CaptureSucceeded(
        capture_id=capture_id or new_id("cap"),
        revision=2,
        payment_id=payment_id or new_id("pay"),
        order_id=order_id or new_id("ord"),
        logistic_order_id=logistic_order_id or new_id("lo"),
        supplier_id=supplier_id,
        amount={"value": amount, "currency": currency},
        trigger="MANUAL",
        psp_reference=new_id("psp"),
        splits=[
            SplitLineData(party="PLATFORM", amount=platform, rate=Decimal(platform_rate)),
            SplitLineData(party="MARKETPLACE", amount=marketplace, rate=Decimal(marketplace_rate)),
            SplitLineData(party="SUPPLIER", amount=amount - platform - marketplace),
        ],
        platform_rate=Decimal(platform_rate),
        marketplace_rate=Decimal(marketplace_rate),
    )


def return_lines(
    capture: CaptureSucceeded, platform: int, marketplace: int, supplier: int
) -> list[ReturnLine]:
    parts = (("PLATFORM", platform), ("MARKETPLACE", marketplace), ("SUPPLIER", supplier))
    return [
        ReturnLine(
            capture_id=capture.capture_id,
            logistic_order_id=capture.logistic_order_id,
            supplier_id=capture.supplier_id,
            party=party,
            amount=amount,
        )
        for party, amount in parts
        if amount
    ]


def refund_fields(
    capture: CaptureSucceeded,
    lines: list[ReturnLine],
    *,
    refund_id: str,
    revision: int,
    currency: str = "EUR",
) -> dict[str, Any]:
    return {
        "refund_id": refund_id,
        "revision": revision,
        "payment_id": capture.payment_id,
        "order_id": capture.order_id,
        "capture_id": capture.capture_id,
        "logistic_order_id": capture.logistic_order_id,
        "supplier_id": capture.supplier_id,
        "amount": {"value": sum(x.amount for x in lines), "currency": currency},
        "reason": "test",
        "lines": lines,
    }


def refund_requested(
    capture: CaptureSucceeded, lines: list[ReturnLine], *, refund_id: str, funds_check: bool
) -> RefundRequested:
    return RefundRequested(
        **refund_fields(capture, lines, refund_id=refund_id, revision=1), funds_check=funds_check
    )


def refund_succeeded(
    capture: CaptureSucceeded, lines: list[ReturnLine], *, refund_id: str
) -> RefundSucceeded:
    return RefundSucceeded(
        **refund_fields(capture, lines, refund_id=refund_id, revision=3),
        psp_reference=new_id("psp"),
    )


def refund_failed(
    capture: CaptureSucceeded, lines: list[ReturnLine], *, refund_id: str
) -> RefundFailed:
    return RefundFailed(
        **refund_fields(capture, lines, refund_id=refund_id, revision=3),
        code="refused",
        message="the PSP refused it",
    )


def chargeback(
    capture: CaptureSucceeded, lines: list[ReturnLine], *, chargeback_id: str, revision: int = 1
) -> ChargebackEvent:
    return ChargebackEvent(
        chargeback_id=chargeback_id,
        revision=revision,
        payment_id=capture.payment_id,
        order_id=capture.order_id,
        psp_reference=new_id("psp"),
        stage="CHARGEBACK",
        amount={"value": sum(x.amount for x in lines), "currency": "EUR"},
        lines=lines,
    )


def payment_paid(capture: CaptureSucceeded) -> PaymentStatusChanged:
    return PaymentStatusChanged(
        payment_id=capture.payment_id,
        order_id=capture.order_id,
        status_from="CAPTURE_PENDING",
        status="PAID",
        amount=capture.amount,
        psp_reference=None,
    )


def logistic_status(
    tenant_id: str, capture: CaptureSucceeded, status: str = "SHIPPED"
) -> dict[str, Any]:
    return LogisticOrderStatusChanged(
        id=new_id("oms"),
        tenant_id=tenant_id,
        order_id=capture.order_id,
        logistic_order_id=capture.logistic_order_id,
        supplier_id=capture.supplier_id,
        status=status,
        occurred_at=datetime.now(UTC),
    ).model_dump(mode="json")


VALID_IBAN = "DE89370400440532013000"


@dataclass
class Tenant:
    id: str
    operator_key: str
    suppliers: list[str] = field(default_factory=list)
    supplier_keys: dict[str, str] = field(default_factory=dict)


@dataclass
class PayoutsHarness:
    http: aiohttp.ClientSession
    url: str
    app: web.Application
    exchange: AbstractExchange
    oms_exchange: AbstractExchange
    amqp_url: str
    names: Names
    sandbox: Any = None
    clock: Any = None
    start_replica: Any = None
    settings: Any = None

    @property
    def pool(self) -> asyncpg.Pool:
        return self.app[DB_POOL]

    # -- the bus ------------------------------------------------------------------------

    async def publish(self, event_type: str, data: EventData, tenant_id: str) -> uuid.UUID:
        envelope = make_envelope(
            EventType(event_type), data, tenant_id=tenant_id, correlation_id="test"
        )
        await self.exchange.publish(
            aio_pika.Message(
                envelope.model_dump_json().encode(),
                message_id=str(envelope.id),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=event_type,
        )
        return envelope.id

    async def publish_raw(self, routing_key: str, body: dict[str, Any]) -> None:
        """A message its producer's model would refuse (a negative amount, ...)."""
        await self.exchange.publish(
            aio_pika.Message(json.dumps(body).encode(), message_id=body.get("id")),
            routing_key=routing_key,
        )

    async def publish_oms(self, body: dict[str, Any]) -> None:
        await self.oms_exchange.publish(
            aio_pika.Message(json.dumps(body).encode(), content_type="application/json"),
            routing_key=OMS_STATUS_CHANGED,
        )

    async def applied(self, *message_ids: uuid.UUID, within: float = 20) -> None:
        async def done() -> bool:
            async with self.pool.acquire() as conn:
                found = await conn.fetchval(
                    "SELECT count(*) FROM inbox WHERE message_id = ANY($1::uuid[])",
                    list(message_ids),
                )
            return bool(found == len(message_ids))

        await eventually(done, within=within)

    async def send(self, event_type: str, data: EventData, tenant_id: str) -> None:
        """Publish and wait until payouts applied it."""
        await self.applied(await self.publish(event_type, data, tenant_id))

    async def request_refund(
        self,
        tenant: Tenant,
        capture: CaptureSucceeded,
        lines: list[ReturnLine],
        *,
        funds_check: bool,
    ) -> str:
        """Send a refund.requested of `lines` of `capture` and wait until payouts applied it;
        the new refund's id."""
        refund_id = new_id("ref")
        await self.send(
            "refund.requested",
            refund_requested(capture, lines, refund_id=refund_id, funds_check=funds_check),
            tenant.id,
        )
        return refund_id

    async def dead_letters(
        self, queue: str, count: int, within: float = 20
    ) -> list[tuple[bytes, dict[str, Any]]]:
        found: list[tuple[bytes, dict[str, Any]]] = []
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel()
            dlq = await channel.get_queue(self.names.queue(f"{queue}.dlq"))

            async def arrived() -> bool:
                while (message := await dlq.get(no_ack=True, fail=False)) is not None:
                    found.append((message.body, dict(message.headers or {})))
                return len(found) >= count

            await eventually(arrived, within=within)
        return found

    async def published(self, event_type: str, **match: str) -> list[dict[str, Any]]:
        """What payouts wrote to its outbox (`outbox_log`) of `event_type` whose data matches."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT envelope FROM outbox_log WHERE routing_key = $1 ORDER BY seq", event_type
            )
        datas = [r["envelope"]["data"] for r in rows]
        return [d for d in datas if all(d.get(k) == v for k, v in match.items())]

    # -- tenancy ------------------------------------------------------------------------

    async def new_tenant(
        self,
        *,
        suppliers: int = 3,
        funding_policy: FundingPolicy = "REFUSE_REFUND",
        banking_mode: BankingMode = "DISABLED",
        kyc: KycStatus = "enabled",
        iban: str | None = VALID_IBAN,
    ) -> Tenant:
        tenant = Tenant(id=f"ten_{secrets.token_hex(6)}", operator_key=generate_key("test"))
        settings = tenant_upserted(tenant.id, f"Pay{secrets.token_hex(4)}ECOM").model_copy(
            update={"funding_policy": funding_policy, "marketplace_banking_mode": banking_mode}
        )
        ids = [await self.publish("tenant.upserted", settings, tenant.id)]
        keys: list[tuple[str, Role, str | None]] = [(tenant.operator_key, "operator", None)]
        for _ in range(suppliers):
            supplier_id = f"sup_{secrets.token_hex(6)}"
            tenant.suppliers.append(supplier_id)
            event = supplier_upserted(tenant.id, supplier_id).model_copy(
                update={"kyc_status": kyc, "iban": iban}
            )
            ids.append(await self.publish("supplier.upserted", event, tenant.id))
            key = generate_key("test")
            tenant.supplier_keys[supplier_id] = key
            keys.append((key, "supplier", supplier_id))
        for key, role, supplier in keys:
            ids.append(
                await self.publish(
                    "api_key.upserted",
                    api_key_upserted(tenant.id, key, role, supplier_id=supplier),
                    tenant.id,
                )
            )
        await self.applied(*ids)
        return tenant

    # -- HTTP ---------------------------------------------------------------------------

    async def call(
        self, method: str, path: str, key: str, json: Any = None, idempotency_key: str | None = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {key}"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        async with self.http.request(method, self.url + path, json=json, headers=headers) as r:
            return r.status, await r.json()

    async def balances(self, tenant: Tenant, as_of: str | None = None) -> dict[str, int]:
        """{"PLATFORM": ..., "MARKETPLACE": ..., "<supplier id>": ..., "PSP_CLEARING": ...}"""
        path = "/v1/admin/balances" + (f"?as_of={as_of}" if as_of else "")
        status, body = await self.call("GET", path, tenant.operator_key)
        assert status == 200, body
        return {(a["supplier_id"] or a["type"]): a["balance"] for a in body["data"]}

    async def available(self, tenant: Tenant, supplier_id: str) -> int:
        status, body = await self.call(
            "GET", f"/v1/admin/balances?supplier_id={supplier_id}", tenant.operator_key
        )
        assert status == 200, body
        return int(body["data"][0]["available"]) if body["data"] else 0

    # -- payouts ------------------------------------------------------------------------

    async def deliver_capture(
        self, tenant: Tenant, capture: CaptureSucceeded, *, status: str = "SHIPPED"
    ) -> None:
        """A capture that is PAID and whose logistic order has `status`: eligible if allowed."""
        await self.send("capture.succeeded", capture, tenant.id)
        await self.send("payment.status_changed", payment_paid(capture), tenant.id)
        await self.publish_oms(logistic_status(tenant.id, capture, status))

        async def known() -> bool:
            async with self.pool.acquire() as conn:
                return bool(
                    await conn.fetchval(
                        "SELECT EXISTS (SELECT 1 FROM logistic_orders WHERE tenant_id = $1"
                        " AND order_id = $2 AND status = $3)",
                        tenant.id,
                        capture.order_id,
                        status,
                    )
                )

        await eventually(known)

    async def compute(self, tenant: Tenant, **body: Any) -> list[dict[str, Any]]:
        status, answer = await self.call(
            "POST",
            "/v1/admin/payouts/compute",
            tenant.operator_key,
            json=body,
            idempotency_key=new_id("idem"),
        )
        assert status == 201, answer
        found: list[dict[str, Any]] = answer["data"]
        return found

    async def execute(self, tenant: Tenant, payout_id: str, action: str = "execute") -> Any:
        status, answer = await self.call(
            "POST",
            f"/v1/admin/payouts/{payout_id}/{action}",
            tenant.operator_key,
            idempotency_key=new_id("idem"),
        )
        assert status == 202, answer
        return answer["data"]

    async def payout(self, tenant: Tenant, payout_id: str) -> dict[str, Any]:
        status, answer = await self.call(
            "GET", f"/v1/admin/payouts/{payout_id}", tenant.operator_key
        )
        assert status == 200, answer
        found: dict[str, Any] = answer["data"]
        return found

    async def until_payout(
        self, tenant: Tenant, payout_id: str, status: str, within: float = 20
    ) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        async def reached() -> bool:
            seen.update(await self.payout(tenant, payout_id))
            return bool(seen["status"] == status)

        await eventually(reached, within=within)
        return seen

    async def provider_orders(self) -> dict[str, Any]:
        found: dict[str, Any] = await self.sandbox.get("/sandbox/payout-orders")
        return found

    async def provider_faults(self, **faults: Any) -> None:
        async with self.sandbox.http.put(
            f"{self.sandbox.url}/sandbox/payout-faults", json=faults
        ) as response:
            assert response.status == 200, await response.text()

    async def call_raw(self, path: str, body: Any) -> tuple[int, Any]:
        async with self.http.post(self.url + path, json=body) as response:
            return response.status, await response.json()

    async def set_schedule(self, tenant: Tenant, **schedule: Any) -> None:
        async with self.pool.acquire() as conn:
            data = await conn.fetchval(
                "SELECT data FROM replica_tenants WHERE tenant_id = $1", tenant.id
            )
        event = TenantUpserted.model_validate(data)
        event = event.model_copy(
            update={
                "revision": event.revision + 1,
                "payout_schedule": event.payout_schedule.model_copy(update=schedule),
            }
        )
        await self.send("tenant.upserted", event, tenant.id)
