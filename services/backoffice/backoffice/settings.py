from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """The back office keeps no data of its own: it calls the services' admin APIs with the
    logged-in key, which it holds in server memory behind the session cookie."""

    model_config = SettingsConfigDict(
        env_prefix="MARKETPAY_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    profile: Literal["local", "test", "production"] = "production"
    service_name: str = "backoffice"
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8087, ge=0, le=65535)
    log_level: str = "INFO"
    # the services it calls, server-side
    tenants_url: str = "http://127.0.0.1:8086"
    checkout_url: str = "http://127.0.0.1:8081"
    capture_url: str = "http://127.0.0.1:8083"
    payouts_url: str = "http://127.0.0.1:8084"
    exports_url: str = "http://127.0.0.1:8085"
    upstream_timeout_s: float = Field(default=10.0, gt=0)
    # where browsers load the PSP's drop-in script from (the sandbox in development)
    psp_dropin_url: str = "http://127.0.0.1:8090/sandbox/dropin.js"
    # Fernet key (32 bytes, url-safe base64) that encrypts the session cookie, which holds
    # only a random session id; required outside the local and test profiles
    session_secret: SecretStr | None = None
    session_max_age_s: int = Field(default=8 * 3600, ge=60)
    # Secure cookies (HTTPS only); on by default, off in the local and test profiles
    cookie_secure: bool = True
    # the demo storefront's key and the suppliers its cart sells for: given directly, or read
    # (at each checkout) from a JSON file with `storefront_key` and `suppliers: [{id, name}]`
    storefront_key: SecretStr | None = None
    storefront_supplier_ids: tuple[str, ...] = ()
    storefront_keys_file: Path | None = None
    # the capture mode of the demo's sessions; None: the tenant's setting
    storefront_capture_mode: Literal["IMMEDIATE", "DELAYED", "ON_SHIPMENT", "MANUAL"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain_http_locally(cls, values: Any) -> Any:
        if isinstance(values, dict) and values.get("profile") in ("local", "test"):
            values.setdefault("cookie_secure", False)
        return values

    @model_validator(mode="after")
    def _production_needs_a_secret(self) -> Settings:
        if self.profile == "production" and self.session_secret is None:
            raise ValueError("MARKETPAY_SESSION_SECRET is required in production")
        return self
