"""What every page handler shares: rendering with the visit's context, the login guard, and
turning an API's refusal into a page."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from backoffice.sessions import VISIT, Login, Visit, end_visit, visit_of
from backoffice.upstream import UPSTREAM, Answer
from common.money import currency_exponent


@dataclass(frozen=True)
class Screen:
    """A back-office screen in the navigation. `roles` only decides whether the link is shown:
    what a key may see is decided by the service it calls."""

    path: str
    title: str
    roles: frozenset[str]


BOTH = frozenset({"operator", "supplier"})
OPERATOR = frozenset({"operator"})

# The navigation, in order. A new screen adds its module of routes in app.py and its line here.
NAV: list[Screen] = [
    Screen("/payments", "Transactions", BOTH),
    Screen("/chart", "Daily", BOTH),
    Screen("/interventions", "Capture queue", OPERATOR),
    Screen("/refund-interventions", "Refund queue", OPERATOR),
    Screen("/balances", "Balances", BOTH),
    Screen("/payouts", "Payouts", BOTH),
    Screen("/funding-transfers", "Funding", BOTH),
    Screen("/exports", "Exports", BOTH),
    Screen("/suppliers", "Suppliers", OPERATOR),
]


def render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    visit: Visit | None = request.get(VISIT)
    login = visit.login if visit else None
    base = {
        "login": login,
        "nav": [s for s in NAV if login and login.role in s.roles],
        "csrf_token": visit.csrf_token if visit else "",
        "flashes": visit.take_flashes() if visit else [],
        "path": request.path,
    }
    return aiohttp_jinja2.render_template(template, request, base | context, status=status)


def new_idempotency_key() -> str:
    """One per rendered form: a double click (or a re-sent form) repeats the same key, and the
    service answers the first result again instead of acting twice."""
    return uuid.uuid4().hex


PageHandler = Callable[[web.Request, Login], Awaitable[web.StreamResponse]]


def logged_in(handler: PageHandler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    @functools.wraps(handler)
    async def guarded(request: web.Request) -> web.StreamResponse:
        visit = await visit_of(request)
        if visit.login is None:
            raise web.HTTPSeeOther(f"/login?next={request.path_qs}")
        return await handler(request, visit.login)

    return guarded


async def call(
    request: web.Request,
    login: Login,
    service: str,
    method: str,
    path: str,
    **kwargs: Any,
) -> Answer:
    """The service's answer to this login's key; a key the service no longer knows ends the
    session (back to the login page)."""
    answer = await request.app[UPSTREAM].call(service, method, path, login.api_key, **kwargs)
    if answer.status == 401:
        await end_visit(request)
        raise web.HTTPSeeOther("/login")
    return answer


def refused(request: web.Request, answer: Answer, what: str) -> web.Response:
    """A page for a read the service refused: 403 (not this key's to see), 404, or other."""
    status = answer.status if answer.status in (400, 403, 404, 409, 422) else 502
    return render(
        request,
        "error.html",
        {"title": what, "error": answer.error, "status": answer.status},
        status=status,
    )


def money(value: int | None, currency: str | None) -> str:
    """Minor units as a person reads them (EUR 2 decimals; JPY none), via the money module."""
    if value is None or currency is None:
        return ""
    try:
        exponent = currency_exponent(currency)
    except ValueError:
        return f"{currency} {value}"
    if exponent == 0:
        return f"{currency} {value:,}"
    sign = "-" if value < 0 else ""
    whole, part = divmod(abs(value), 10**exponent)
    return f"{sign}{currency} {whole:,}.{part:0{exponent}d}"
