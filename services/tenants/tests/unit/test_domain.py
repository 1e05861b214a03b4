"""The tenants service's pure rules."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from common.events import PayoutSchedule
from tenants import domain


def settings(**fields):
    return domain.TenantSettings(merchant_account="AcmeECOM", **fields)


def test_delayed_capture_needs_a_delay():
    # given
    current = settings(capture_mode="MANUAL")

    # when
    with pytest.raises(domain.RuleViolation) as caught:
        domain.apply_settings(current, {"capture_mode": "DELAYED"})

    # then
    assert caught.value.code == "capture_delay_hours_required"
    assert caught.value.param == "capture_delay_hours"
    assert caught.value.conflict is False


def test_delayed_capture_with_a_delay_set_earlier_is_accepted():
    # given
    current = settings(capture_mode="MANUAL", capture_delay_hours=24)

    # when
    updated = domain.apply_settings(current, {"capture_mode": "DELAYED"})

    # then
    assert updated.capture_mode == "DELAYED"
    assert updated.capture_delay_hours == 24


def test_a_partial_update_keeps_the_other_settings_and_dedupes_statuses():
    # given
    current = settings(default_rate=Decimal("2.5"), funding_policy="MARKETPLACE_COVERS")

    # when
    updated = domain.apply_settings(
        current, {"allowed_logistic_statuses": ("SHIPPED", "COMPLETED", "SHIPPED")}
    )

    # then
    assert updated.allowed_logistic_statuses == ("SHIPPED", "COMPLETED")
    assert updated.default_rate == Decimal("2.5")
    assert updated.funding_policy == "MARKETPLACE_COVERS"
    assert updated != current


@pytest.mark.parametrize("statuses", [(), ("SHIPPED", "TELEPORTED")])
def test_logistic_statuses_must_be_known_and_not_empty(statuses):
    # when
    with pytest.raises(domain.RuleViolation) as caught:
        domain.apply_settings(settings(), {"allowed_logistic_statuses": statuses})

    # then
    assert caught.value.param == "allowed_logistic_statuses"


def test_the_defaults_are_the_products():
    # when
    defaults = settings()

    # then
    assert defaults.default_rate is None
    assert defaults.capture_mode == "ON_SHIPMENT"
    assert defaults.allowed_logistic_statuses == ("SHIPPED",)
    assert defaults.marketplace_banking_mode == "DISABLED"
    assert defaults.payout_schedule == PayoutSchedule()


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("DE89370400440532013000", "DE89370400440532013000"),
        ("de89 3704 0044 0532 0130 00", "DE89370400440532013000"),
        ("FR14 2004 1010 0505 0001 3M02 606", "FR1420041010050500013M02606"),
        ("NL91ABNA0417164300", "NL91ABNA0417164300"),
    ],
)
def test_ibans_are_stored_compact_and_upper_case(given, stored):
    assert domain.normalise_iban(given) == stored


@pytest.mark.parametrize("iban", ["DE89370400440532013001", "XX00", "", "DE8937040044053201300"])
def test_invalid_ibans_are_refused(iban):
    # when
    with pytest.raises(domain.RuleViolation) as caught:
        domain.normalise_iban(iban)

    # then
    assert (caught.value.code, caught.value.param) == ("iban_invalid", "iban")


@pytest.mark.parametrize(
    ("text", "role", "supplier_id"),
    [
        ("operator", "operator", None),
        ("storefront", "storefront", None),
        ("supplier:sup_abc", "supplier", "sup_abc"),
    ],
)
def test_roles_parse(text, role, supplier_id):
    parsed = domain.parse_role(text)
    assert (parsed.role, parsed.supplier_id) == (role, supplier_id)
    assert str(parsed) == text


@pytest.mark.parametrize("text", ["admin", "supplier", "supplier:", "supplier:ten_x", "Operator"])
def test_unknown_roles_are_refused(text):
    with pytest.raises(domain.RuleViolation) as caught:
        domain.parse_role(text)
    assert caught.value.code == "role_invalid"


def test_the_last_operator_key_cannot_be_revoked():
    with pytest.raises(domain.RuleViolation) as caught:
        domain.check_revocation(
            key_role="operator", already_revoked=False, other_active_operators=0
        )
    assert caught.value.conflict is True
    assert caught.value.code == "last_operator_key"


def test_revocation_changes_something_only_once():
    assert domain.check_revocation(
        key_role="operator", already_revoked=False, other_active_operators=1
    )
    assert domain.check_revocation(
        key_role="storefront", already_revoked=False, other_active_operators=0
    )
    assert not domain.check_revocation(
        key_role="operator", already_revoked=True, other_active_operators=0
    )


def test_the_key_prefix_is_the_environment_and_a_few_characters():
    assert domain.key_prefix("test_abcdefghijklmnop") == "test_abcdefg"


def tenant_row(**fields):
    now = datetime(2025, 1, 1, tzinfo=UTC)
    return {
        "id": "ten_1",
        "revision": 3,
        "name": "Acme",
        "status": "active",
        "psp": "adyen",
        "merchant_account": "AcmeECOM",
        "currency": "EUR",
        "default_rate": Decimal("2.5000"),
        "capture_mode": "DELAYED",
        "capture_delay_hours": 12,
        "allowed_logistic_statuses": ["SHIPPED"],
        "marketplace_banking_mode": "DISABLED",
        "funding_policy": "REFUSE_REFUND",
        "payout_schedule": {"frequency": "DAILY"},
        "time_zone": "Europe/Paris",
        "bank_transfer_iban": None,
        "created_at": now,
        "updated_at": now,
        **fields,
    }


def test_the_tenant_event_carries_the_full_state():
    # when
    event = domain.tenant_event(tenant_row())

    # then
    data = event.model_dump(mode="json")
    assert data["tenant_id"] == "ten_1"
    assert data["revision"] == 3
    assert data["default_rate"] == "2.5"
    assert data["capture_delay_hours"] == 12
    assert data["payout_schedule"]["frequency"] == "DAILY"
    assert data["payout_schedule"]["hour_utc"] == 6
    assert data["time_zone"] == "Europe/Paris"


def test_the_supplier_event_carries_the_commission_rate():
    # given
    row = {
        "id": "sup_1",
        "tenant_id": "ten_1",
        "revision": 2,
        "name": "S",
        "kyc_status": "enabled",
        "iban": None,
        "payment_due_date_delay": 45,
        "payment_due_date_mode": "END_OF_MONTH",
    }

    # when
    with_rate = domain.supplier_event(row, Decimal("12.5000")).model_dump(mode="json")
    without = domain.supplier_event(row, None).model_dump(mode="json")

    # then
    assert with_rate["commission_rate"] == "12.5"
    assert without["commission_rate"] is None
    assert with_rate["payment_due_date_delay"] == 45


def test_the_api_key_event_says_whether_it_is_revoked():
    # given
    key = domain.ApiKeyState(
        id="key_1",
        tenant_id="ten_1",
        revision=2,
        key_hash="a" * 64,
        prefix="test_ab",
        role="supplier",
        supplier_id="sup_1",
        name=None,
        created_at=datetime(2024, 12, 1, tzinfo=UTC),
        revoked_at=datetime(2025, 1, 1, tzinfo=UTC),
    )

    # when
    event = domain.api_key_event(key)

    # then
    assert event.revoked is True
    assert event.supplier_id == "sup_1"
