"""Tenants for tests and benchmarks of services other than `tenants`: the full-state events
the tenants service would publish, and publishing them (or any event) on the bus as it does."""

from __future__ import annotations

from collections.abc import Sequence

import aio_pika

from common.events import (
    ApiKeyUpserted,
    CaptureMode,
    Envelope,
    EventData,
    EventType,
    Role,
    SupplierUpserted,
    TenantUpserted,
    make_envelope,
    routing_key,
)
from common.http.auth import hash_key


def tenant_upserted(
    tenant_id: str,
    merchant_account: str,
    *,
    capture_mode: CaptureMode = "MANUAL",
    capture_delay_hours: int = 0,
    default_rate: str | None = "2.5",
    revision: int = 1,
) -> TenantUpserted:
    return TenantUpserted(
        tenant_id=tenant_id,
        revision=revision,
        name="Test",
        status="active",
        psp="adyen",
        merchant_account=merchant_account,
        currency="EUR",
        default_rate=default_rate,
        capture_mode=capture_mode,
        capture_delay_hours=capture_delay_hours,
        allowed_logistic_statuses=["SHIPPED"],
        marketplace_banking_mode="DISABLED",
        funding_policy="REFUSE_REFUND",
        payout_schedule={},
    )


def supplier_upserted(
    tenant_id: str, supplier_id: str, *, commission_rate: str | None = "10", revision: int = 1
) -> SupplierUpserted:
    return SupplierUpserted(
        tenant_id=tenant_id,
        supplier_id=supplier_id,
        revision=revision,
        name="S",
        kyc_status="enabled",
        iban=None,
        payment_due_date_delay=30,
        payment_due_date_mode="SIMPLE",
        commission_rate=commission_rate,
    )


def api_key_upserted(
    tenant_id: str, key: str, role: Role, *, supplier_id: str | None = None, revision: int = 1
) -> ApiKeyUpserted:
    """The event of the API key `key` (only its hash travels); its id comes from the hash, so
    publishing it again is the same event for the replicas."""
    return ApiKeyUpserted(
        tenant_id=tenant_id,
        key_id=f"key_{hash_key(key)[:24]}",
        revision=revision,
        key_hash=hash_key(key),
        role=role,
        supplier_id=supplier_id,
        revoked=False,
    )


async def publish(
    amqp_url: str,
    exchange_name: str,
    events: Sequence[tuple[EventType, EventData]],
    *,
    tenant_id: str | None = None,
) -> None:
    """Publish `(event type, payload)` events with confirms, as their producers would; the
    envelope's tenant is `tenant_id`, else the payload's `tenant_id` when it has one."""
    envelopes = [
        make_envelope(
            event_type,
            data,
            tenant_id=tenant_id or getattr(data, "tenant_id", None),
            correlation_id="test",
        )
        for event_type, data in events
    ]
    await publish_envelopes(amqp_url, exchange_name, envelopes)


async def publish_envelopes(
    amqp_url: str, exchange_name: str, envelopes: Sequence[Envelope]
) -> None:
    """Publish ready-made envelopes with confirms, under the routing key their producer would
    use (`common.events.routing_key`; a test may build an envelope that no producer would,
    e.g. with a field a newer producer adds)."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(exchange_name)
        for envelope in envelopes:
            await exchange.publish(
                aio_pika.Message(
                    envelope.model_dump_json().encode(),
                    message_id=str(envelope.id),
                    content_type="application/json",
                ),
                routing_key=routing_key(envelope.type, envelope.data),
            )
