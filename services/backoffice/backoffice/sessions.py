"""Who is logged in, kept server-side.

The browser holds one cookie (aiohttp-session's encrypted cookie, HttpOnly, SameSite=Strict)
carrying only a random session id. The API key, the role and the CSRF token stay in this
process's memory: a restart logs everyone out, and a stolen cookie is worth nothing once the
session is logged out or expired. One replica: run more and they would need a shared store.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp_session import get_session

SESSION_ID = "sid"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ANONYMOUS_MAX_AGE_S = 1800


@dataclass
class Login:
    api_key: str
    role: str  # operator or supplier
    label: str  # what the header shows: the tenant's name, or the supplier's
    supplier_id: str | None = None


@dataclass
class Visit:
    """One browser's session: its CSRF token, and its login once it has one."""

    csrf_token: str
    expires_at: float
    login: Login | None = None
    # the storefront's checkout sessions opened in this browser: payment id -> client token
    client_tokens: dict[str, str] = field(default_factory=dict)
    # messages for the next page shown (after a redirect): (level, text)
    flashes: list[tuple[str, str]] = field(default_factory=list)

    def flash(self, level: str, text: str) -> None:
        self.flashes.append((level, text))

    def take_flashes(self) -> list[tuple[str, str]]:
        taken, self.flashes = self.flashes, []
        return taken


class SessionStore:
    def __init__(self, max_age_s: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._visits: dict[str, Visit] = {}
        self._max_age_s = max_age_s
        self._clock = clock

    def get(self, session_id: str | None) -> Visit | None:
        if not session_id:
            return None
        visit = self._visits.get(session_id)
        if visit is None:
            return None
        if visit.expires_at <= self._clock():
            del self._visits[session_id]
            return None
        return visit

    def open(self) -> tuple[str, Visit]:
        """A visit not (yet) logged in lives `ANONYMOUS_MAX_AGE_S` at most: pages fetched
        without a cookie cannot fill the store for a whole session's lifetime."""
        self._sweep()
        session_id = secrets.token_urlsafe(32)
        ttl = min(self._max_age_s, ANONYMOUS_MAX_AGE_S)
        visit = Visit(csrf_token=secrets.token_urlsafe(32), expires_at=self._clock() + ttl)
        self._visits[session_id] = visit
        return session_id, visit

    def log_in(self, visit: Visit, login: Login) -> None:
        visit.login = login
        visit.expires_at = self._clock() + self._max_age_s

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._visits.pop(session_id, None)

    def _sweep(self) -> None:
        now = self._clock()
        for session_id in [k for k, v in self._visits.items() if v.expires_at <= now]:
            del self._visits[session_id]


STORE = web.AppKey("session_store", SessionStore)
VISIT = web.RequestKey("visit", Visit)


async def visit_of(request: web.Request, *, renew: bool = False) -> Visit:
    """The browser's visit, opened on first sight; `renew` gives a new id (at login, against
    session fixation)."""
    store = request.app[STORE]
    session = await get_session(request)
    session_id = session.get(SESSION_ID)
    visit = store.get(session_id)
    if visit is None or renew:
        store.drop(session_id)
        session_id, fresh = store.open()
        if visit is not None:
            fresh.client_tokens = visit.client_tokens
        visit = fresh
        session[SESSION_ID] = session_id
    request[VISIT] = visit
    return visit


async def end_visit(request: web.Request) -> None:
    session = await get_session(request)
    request.app[STORE].drop(session.get(SESSION_ID))
    session.invalidate()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every state-changing request carries the visit's CSRF token, in the form field or (htmx,
    fetch) in the header; without it, 403 and nothing is done."""
    if request.method in _UNSAFE:
        visit = await visit_of(request)
        given = request.headers.get(CSRF_HEADER)
        if given is None and request.content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            given = str((await request.post()).get(CSRF_FIELD, ""))
        if not given or not hmac.compare_digest(given.encode(), visit.csrf_token.encode()):
            raise web.HTTPForbidden(reason="CSRF token missing or wrong")
    return await handler(request)
