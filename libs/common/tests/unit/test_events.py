"""The event envelope and its catalogue (DESIGN §3)."""

import uuid
from decimal import Decimal

import pytest
from pydantic import ValidationError

from common.events import (
    CATALOGUE,
    DOMAIN_EXCHANGE,
    Envelope,
    EventType,
    SupplierUpserted,
    TenantUpserted,
    UnknownEventError,
    make_envelope,
    notification_bindings,
    parse_data,
    read_data,
    routing_key,
)
from common.testing.events import Probe, probe_type


def tenant_data(**changes) -> dict:
    data = {
        "tenant_id": "ten_1",
        "revision": 1,
        "name": "Acme",
        "status": "active",
        "psp": "adyen",
        "merchant_account": "AcmeECOM",
        "currency": "EUR",
        "default_rate": "2.5",
        "capture_mode": "ON_SHIPMENT",
        "capture_delay_hours": 0,
        "allowed_logistic_statuses": ["SHIPPED"],
        "marketplace_banking_mode": "DISABLED",
        "funding_policy": "MARKETPLACE_COVERS",
        "payout_schedule": {"frequency": "WEEKLY"},
    }
    return {**data, **changes}


def test_the_catalogue_uses_the_event_type_names():
    # when / then
    assert set(CATALOGUE) <= {t.value for t in EventType}
    assert EventType.CAPTURE_SUCCEEDED == "capture.succeeded"


def test_make_envelope_carries_a_catalogue_model():
    # when
    envelope = make_envelope(
        EventType.TENANT_UPSERTED,
        TenantUpserted.model_validate(tenant_data()),
        tenant_id="ten_1",
        correlation_id="c-1",
    )
    # then
    assert envelope.type == "tenant.upserted"
    assert envelope.version == 1
    assert envelope.occurred_at.tzinfo is not None
    assert isinstance(parse_data(envelope), TenantUpserted)


@pytest.mark.parametrize(
    "data",
    [
        tenant_data(currency="XXX"),
        tenant_data(default_rate="101"),
        tenant_data(capture_mode="SOMETIMES"),
        tenant_data(unknown_field=1),
        {k: v for k, v in tenant_data().items() if k != "name"},
    ],
)
def test_a_producer_cannot_build_a_payload_that_breaks_the_catalogue(data):
    # when / then
    with pytest.raises(ValidationError):
        TenantUpserted.model_validate(data)


def test_make_envelope_refuses_a_dict_or_another_events_model():
    # given
    supplier = SupplierUpserted(
        tenant_id="ten_1",
        supplier_id="sup_1",
        revision=1,
        name="S",
        kyc_status="enabled",
        iban=None,
        payment_due_date_delay=30,
        payment_due_date_mode="SIMPLE",
        commission_rate=None,
    )
    # when / then
    with pytest.raises(TypeError, match="carries TenantUpserted, not dict"):
        make_envelope(
            EventType.TENANT_UPSERTED, tenant_data(), tenant_id="ten_1", correlation_id="c"
        )
    with pytest.raises(TypeError, match="not SupplierUpserted"):
        make_envelope(EventType.TENANT_UPSERTED, supplier, tenant_id="ten_1", correlation_id="c")


def test_make_envelope_refuses_a_type_without_a_payload_model():
    # when / then
    with pytest.raises(UnknownEventError):
        make_envelope(
            "never.registered",
            Probe(n=1),
            tenant_id=None,
            correlation_id="c",
        )


def test_make_envelope_carries_the_payload_in_its_json_form():
    # given a producer that passes a rate as a Decimal
    data = TenantUpserted.model_validate(tenant_data(default_rate=Decimal("2.50")))
    # when
    envelope = make_envelope(EventType.TENANT_UPSERTED, data, tenant_id="ten_1", correlation_id="c")
    # then consumers see what the model itself would publish
    assert envelope.data["default_rate"] == "2.5"
    assert envelope.data["payout_schedule"]["hour_utc"] == 6


def test_a_consumer_reads_a_payload_with_fields_it_does_not_know():
    # given a newer producer's payload: an extra field at the top and in a nested model
    envelope = make_envelope(
        EventType.TENANT_UPSERTED,
        TenantUpserted.model_validate(tenant_data()),
        tenant_id="ten_1",
        correlation_id="c",
    )
    newer = envelope.model_copy(
        update={
            "data": {
                **envelope.data,
                "loyalty_tier": "gold",
                "payout_schedule": {**envelope.data["payout_schedule"], "timezone": "CET"},
            }
        }
    )
    # when
    read = parse_data(newer)
    direct = read_data(TenantUpserted, newer.data)
    # then the known fields are read, the unknown ones ignored
    assert read == direct == TenantUpserted.model_validate(tenant_data())


def test_a_consumer_still_refuses_a_known_field_with_a_wrong_value():
    # when / then
    with pytest.raises(ValidationError):
        read_data(TenantUpserted, tenant_data(currency="XXX", extra_field=1))


def test_an_envelope_round_trips_through_json():
    # given
    envelope = make_envelope(
        EventType.TENANT_UPSERTED,
        TenantUpserted.model_validate(tenant_data()),
        tenant_id="ten_1",
        correlation_id="corr",
        causation_id=str(uuid.uuid4()),
    )
    # when
    again = Envelope.model_validate_json(envelope.model_dump_json())
    # then
    assert again == envelope
    assert parse_data(again) == parse_data(envelope)


def test_test_only_event_types_travel_but_are_not_in_the_catalogue():
    # given
    envelope = make_envelope(
        probe_type("thing.made"), Probe(n=1), tenant_id=None, correlation_id="c"
    )
    # when / then
    assert envelope.data["n"] == 1
    assert "thing.made" not in CATALOGUE
    assert parse_data(envelope) == Probe(n=1)
    with pytest.raises(ValueError, match="real event type"):
        probe_type(EventType.EXPORT_READY)
    with pytest.raises(UnknownEventError):
        parse_data(envelope.model_copy(update={"type": "never.registered"}))


def test_an_envelope_refuses_unknown_fields():
    # given
    raw = make_envelope(
        probe_type("thing.made"), Probe(), tenant_id=None, correlation_id="c"
    ).model_dump(mode="json")
    # when / then
    with pytest.raises(ValueError, match="Extra inputs"):
        Envelope.model_validate({**raw, "extra": True})


def test_consumers_ignore_fields_a_newer_producer_added_but_producers_stay_strict():
    # given a tenant.upserted as a newer version would send it, with a field added
    from common.broker.consumer import PoisonMessageError, tenant_payload
    from common.events import Envelope, TenantUpserted, parse_data
    from common.testing.tenancy import tenant_upserted

    known = tenant_upserted("ten_1", "AcmeECOM").model_dump(mode="json")
    data = {**known, "added_later": {"any": "thing"}}
    envelope = Envelope(type="tenant.upserted", tenant_id="ten_1", correlation_id="c", data=data)
    # when / then: read without the field, the known fields still checked
    assert parse_data(envelope) == TenantUpserted.model_validate(known)
    event, tenant = tenant_payload(envelope, TenantUpserted)
    assert (event.merchant_account, tenant) == ("AcmeECOM", "ten_1")
    wrong = envelope.model_copy(update={"data": {**data, "revision": 0}})
    with pytest.raises(PoisonMessageError):
        tenant_payload(wrong, TenantUpserted)
    # and this version's producer refuses to send a field the catalogue does not have: the
    # catalogue's model refuses it, and the envelope takes nothing but that model
    with pytest.raises(ValidationError, match="added_later"):
        TenantUpserted.model_validate(data)
    with pytest.raises(TypeError, match="carries TenantUpserted, not dict"):
        make_envelope(EventType.TENANT_UPSERTED, data, tenant_id="ten_1", correlation_id="c")


def test_a_psp_notification_is_routed_under_its_event_code() -> None:
    assert routing_key("psp.notification.received", {"event_code": "CAPTURE"}) == (
        "psp.notification.received.CAPTURE"
    )
    # a code that is not a plain word would split or widen the key: the bare type instead
    for odd in ("capture", "CAP.TURE", "CAP*", "#", "", "X" * 65, None, 7):
        assert routing_key("psp.notification.received", {"event_code": odd}) == (
            "psp.notification.received"
        )
    assert routing_key("psp.notification.received", {}) == "psp.notification.received"
    # every other event keeps its type, whatever its payload
    assert routing_key("capture.succeeded", {"event_code": "CAPTURE"}) == "capture.succeeded"


def test_a_notification_queue_binds_its_codes_and_the_bare_type() -> None:
    assert notification_bindings("REFUND", "REFUND_FAILED") == [
        (DOMAIN_EXCHANGE, "psp.notification.received"),
        (DOMAIN_EXCHANGE, "psp.notification.received.REFUND"),
        (DOMAIN_EXCHANGE, "psp.notification.received.REFUND_FAILED"),
    ]
    with pytest.raises(ValueError, match="not a routable event code"):
        notification_bindings("REFUND.*")
