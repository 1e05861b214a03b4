"""The event envelope and its catalogue (DESIGN §3)."""

import uuid
from decimal import Decimal

import pytest

from common.events import (
    CATALOGUE,
    Envelope,
    EventType,
    TenantUpserted,
    UnknownEventError,
    make_envelope,
    parse_data,
)


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


def test_make_envelope_validates_a_catalogue_payload():
    # when
    envelope = make_envelope(
        EventType.TENANT_UPSERTED, tenant_data(), tenant_id="ten_1", correlation_id="c-1"
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
def test_make_envelope_refuses_a_payload_that_breaks_the_catalogue(data):
    # when / then
    with pytest.raises(ValueError, match="does not match the catalogue"):
        make_envelope(EventType.TENANT_UPSERTED, data, tenant_id="ten_1", correlation_id="c")


def test_make_envelope_carries_the_payload_in_its_json_form():
    # given a producer that passes a rate as a Decimal in a dict
    data = tenant_data(default_rate=Decimal("2.50"))
    # when
    envelope = make_envelope(EventType.TENANT_UPSERTED, data, tenant_id="ten_1", correlation_id="c")
    # then consumers see what the model itself would publish
    assert envelope.data["default_rate"] == "2.5"
    assert envelope.data["payout_schedule"]["hour_utc"] == 6


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


def test_events_outside_the_catalogue_travel_but_cannot_be_parsed():
    # given
    envelope = make_envelope("thing.made", {"n": 1}, tenant_id=None, correlation_id="c")
    # when / then
    assert envelope.data == {"n": 1}
    with pytest.raises(UnknownEventError):
        parse_data(envelope)


def test_an_envelope_refuses_unknown_fields():
    # given
    raw = make_envelope("thing.made", {}, tenant_id=None, correlation_id="c").model_dump(
        mode="json"
    )
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
    # and this version's producer refuses to send a field the catalogue does not have
    with pytest.raises(ValueError, match="does not match the catalogue"):
        make_envelope("tenant.upserted", data, tenant_id="ten_1", correlation_id="c")
