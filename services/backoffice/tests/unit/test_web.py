"""The back office's pure parts: money as people read it, the session store's expiry, where a
login may send you next, what production requires."""

from __future__ import annotations

import pytest

from backoffice.login import _safe_next
from backoffice.sessions import ANONYMOUS_MAX_AGE_S, Login, SessionStore
from backoffice.settings import Settings
from backoffice.web import money


@pytest.mark.parametrize(
    ("value", "currency", "shown"),
    [
        (15000, "EUR", "EUR 150.00"),
        (5, "EUR", "EUR 0.05"),
        (-1234567, "EUR", "-EUR 12,345.67"),
        (1500, "JPY", "JPY 1,500"),
        (1234, "KWD", "KWD 1.234"),
        (12, "XXX", "XXX 12"),
        (None, "EUR", ""),
    ],
)
def test_money_in_major_units(value: int | None, currency: str, shown: str) -> None:
    assert money(value, currency) == shown


def test_a_visit_expires_and_its_id_then_opens_nothing() -> None:
    now = [1000.0]
    store = SessionStore(max_age_s=7200, clock=lambda: now[0])
    session_id, visit = store.open()
    anonymous, logged_in_id = visit, store.open()[0]
    store.log_in(store.get(logged_in_id), Login("k", "operator", "Shop"))  # type: ignore[arg-type]
    assert store.get(session_id) is anonymous
    assert len(visit.csrf_token) >= 40
    now[0] += ANONYMOUS_MAX_AGE_S + 1
    assert store.get(session_id) is None  # never logged in: half an hour
    assert store.get(logged_in_id) is not None
    now[0] += 7200
    assert store.get(logged_in_id) is None
    other_id, other = store.open()
    assert other_id != session_id
    assert other.csrf_token != visit.csrf_token
    store.drop(other_id)
    assert store.get(other_id) is None
    assert store.get(None) is None


@pytest.mark.parametrize(
    ("given", "target"),
    [
        ("/payments/pay_1", "/payments/pay_1"),
        ("/suppliers?x=1", "/suppliers?x=1"),
        ("//evil.example/x", "/payments"),
        ("https://evil.example/", "/payments"),
        ("/\\evil.example", "/payments"),
        ("", "/payments"),
        (None, "/payments"),
    ],
)
def test_login_redirects_only_within_the_site(given: str | None, target: str) -> None:
    assert _safe_next(given) == target


def test_production_needs_a_session_secret_and_secure_cookies_by_default() -> None:
    with pytest.raises(ValueError, match="SESSION_SECRET"):
        Settings(profile="production")
    assert Settings(profile="production", session_secret="k" * 44).cookie_secure is True
    assert Settings(profile="local").cookie_secure is False
