"""Service settings: credentials only from the environment, except in the local profile."""

import pytest
from pydantic import SecretStr, ValidationError

from common.config import LOCAL_PROFILE_DEFAULTS, ServiceSettings


class Settings(ServiceSettings):
    platform_admin_key: SecretStr


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    import os

    for name in list(os.environ):
        if name.startswith("MARKETPAY_"):
            monkeypatch.delenv(name)


def test_production_needs_its_credentials(monkeypatch):
    # given a production environment with only the broker configured
    monkeypatch.setenv("MARKETPAY_AMQP_URL", "amqp://mp:broker-pw-123@mq:5672/")
    # when
    with pytest.raises(ValidationError) as exc:
        ServiceSettings()
    # then the missing one is named, and the given one is not printed
    assert {e["loc"] for e in exc.value.errors()} == {("database_url",)}
    assert "broker-pw-123" not in str(exc.value)


def test_the_test_profile_has_no_defaults_either(monkeypatch):
    # given
    monkeypatch.setenv("MARKETPAY_PROFILE", "test")
    # when / then
    with pytest.raises(ValidationError):
        ServiceSettings()


def test_the_local_profile_fills_in_local_defaults(monkeypatch):
    # given
    monkeypatch.setenv("MARKETPAY_PROFILE", "local")
    # when
    settings = Settings()
    # then
    assert settings.database_url.get_secret_value() == LOCAL_PROFILE_DEFAULTS["database_url"]
    assert settings.amqp_url.get_secret_value() == LOCAL_PROFILE_DEFAULTS["amqp_url"]
    assert settings.platform_admin_key.get_secret_value() == "local_platform_admin_key"


def test_the_environment_wins_over_local_defaults(monkeypatch):
    # given
    monkeypatch.setenv("MARKETPAY_PROFILE", "local")
    monkeypatch.setenv("MARKETPAY_DATABASE_URL", "postgresql://me@db/mine")
    # when / then
    assert Settings().database_url.get_secret_value() == "postgresql://me@db/mine"


def test_secrets_do_not_show_in_repr_or_str(monkeypatch):
    # given
    monkeypatch.setenv("MARKETPAY_DATABASE_URL", "postgresql://mp:db-pw-456@db/mp")
    monkeypatch.setenv("MARKETPAY_AMQP_URL", "amqp://mp:broker-pw-123@mq:5672/")
    monkeypatch.setenv("MARKETPAY_PLATFORM_ADMIN_KEY", "live_admin-key-789")
    # when
    settings = Settings()
    # then
    assert isinstance(settings.database_url, SecretStr)
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        assert "db-pw-456" not in text
        assert "broker-pw-123" not in text
        assert "admin-key-789" not in text


@pytest.mark.parametrize(
    ("name", "value"),
    [("MARKETPAY_DB_SCHEMA", "Robert'); DROP"), ("MARKETPAY_HTTP_PORT", "70000")],
)
def test_invalid_values_are_refused(monkeypatch, name, value):
    # given
    monkeypatch.setenv("MARKETPAY_PROFILE", "local")
    monkeypatch.setenv(name, value)
    # when / then
    with pytest.raises(ValidationError):
        ServiceSettings()
