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
    event = domain.tenant_event(domain.tenant_from_row(tenant_row()))

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
        "created_at": datetime(2025, 1, 1, tzinfo=UTC),
        "updated_at": datetime(2025, 1, 1, tzinfo=UTC),
    }
    supplier = domain.supplier_from_row(row)

    # when
    with_rate = domain.supplier_event(supplier, Decimal("12.5000")).model_dump(mode="json")
    without = domain.supplier_event(supplier, None).model_dump(mode="json")

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


# --- decisions: load -> decide -> save ---------------------------------------------------------

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def a_tenant(**settings_fields):
    return domain.Tenant(
        id="ten_1",
        revision=3,
        name="Acme",
        status="active",
        psp="adyen",
        currency="EUR",
        settings=domain.TenantSettings(merchant_account="AcmeECOM", **settings_fields),
        created_at=NOW,
        updated_at=NOW,
    )


def a_supplier(revision=2):
    return domain.Supplier(
        id="sup_1",
        tenant_id="ten_1",
        revision=revision,
        state=domain.SupplierState(name="S", kyc_status="enabled"),
        created_at=NOW,
        updated_at=NOW,
    )


def a_commission(rate, active=True):
    return domain.Commission(
        id="com_1",
        tenant_id="ten_1",
        supplier_id="sup_1",
        rate=Decimal(rate),
        active=active,
        created_at=NOW,
        deactivated_at=None,
    )


def test_a_new_tenant_starts_at_revision_one_with_its_event():
    # when
    decision = domain.new_tenant(
        tenant_id="ten_9",
        name="Acme",
        psp="adyen",
        currency="EUR",
        merchant_account="AcmeECOM",
        settings_changes={"capture_mode": "DELAYED", "capture_delay_hours": 4},
    )

    # then
    assert decision.revision == 1
    assert decision.settings.capture_delay_hours == 4
    assert decision.event.tenant_id == "ten_9"
    assert decision.event.revision == 1
    assert decision.event.status == "active"
    assert decision.event.capture_mode == "DELAYED"


def test_a_new_tenants_broken_setting_is_reported_under_settings():
    with pytest.raises(domain.RuleViolation) as caught:
        domain.new_tenant(
            tenant_id="ten_9",
            name="Acme",
            psp="adyen",
            currency="EUR",
            merchant_account="AcmeECOM",
            settings_changes={"capture_mode": "DELAYED"},
        )
    assert caught.value.code == "capture_delay_hours_required"
    assert caught.value.param == "settings.capture_delay_hours"


def test_a_settings_change_bumps_the_revision_and_carries_the_full_state():
    # when
    decision = domain.decide_settings(a_tenant(), {"default_rate": Decimal("3.1")})

    # then
    assert decision is not None
    assert decision.revision == 4
    assert decision.event.revision == 4
    assert decision.event.default_rate == Decimal("3.1")
    assert decision.event.merchant_account == "AcmeECOM"
    assert decision.event.name == "Acme"


def test_a_settings_change_that_changes_nothing_is_no_decision():
    assert domain.decide_settings(a_tenant(default_rate=Decimal("2")), {"default_rate": 2}) is None
    assert domain.decide_settings(a_tenant(), {}) is None


def test_a_settings_change_that_breaks_a_rule_is_refused():
    with pytest.raises(domain.RuleViolation) as caught:
        domain.decide_settings(a_tenant(), {"capture_mode": "DELAYED"})
    assert caught.value.param == "capture_delay_hours"


def test_a_supplier_change_bumps_the_revision_and_keeps_the_commission_rate():
    # when
    decision = domain.decide_supplier_change(
        a_supplier(), {"payment_due_date_delay": 60}, Decimal("12.5")
    )

    # then
    assert decision is not None
    assert decision.revision == 3
    assert decision.state.payment_due_date_delay == 60
    assert decision.event.commission_rate == Decimal("12.5")
    assert decision.event.revision == 3


def test_a_supplier_change_that_changes_nothing_is_no_decision():
    assert domain.decide_supplier_change(a_supplier(), {"name": "S"}, None) is None


def test_a_new_supplier_has_no_commission_yet():
    decision = domain.new_supplier(
        supplier_id="sup_2", tenant_id="ten_1", state=domain.SupplierState(name="S")
    )
    assert decision.revision == 1
    assert decision.event.commission_rate is None
    assert decision.event.kyc_status == "created"


def test_putting_the_active_rate_again_changes_nothing():
    decision = domain.decide_commission(
        a_supplier(),
        a_commission("12.5"),
        commission_id="com_2",
        rate=Decimal("12.50"),
        active=True,
    )
    assert decision is None


@pytest.mark.parametrize("current", [None, "10"])
def test_a_new_active_rate_is_a_new_line_and_a_new_supplier_revision(current):
    # when
    decision = domain.decide_commission(
        a_supplier(revision=5),
        a_commission(current) if current else None,
        commission_id="com_2",
        rate=Decimal("12.5"),
        active=True,
    )

    # then
    assert decision is not None
    assert (decision.commission_id, decision.rate, decision.active) == (
        "com_2",
        Decimal("12.5"),
        True,
    )
    assert decision.supplier.revision == 6
    assert decision.supplier.event.commission_rate == Decimal("12.5")


def test_an_inactive_line_leaves_the_supplier_without_a_rate_even_when_it_is_the_active_one():
    # when
    decision = domain.decide_commission(
        a_supplier(),
        a_commission("12.5"),
        commission_id="com_2",
        rate=Decimal("12.5"),
        active=False,
    )

    # then
    assert decision is not None
    assert decision.active is False
    assert decision.supplier.event.commission_rate is None
    assert decision.supplier.revision == 3
