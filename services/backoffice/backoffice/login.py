"""Login with an API key (operator or supplier) and logout.

The key is checked by asking the services who it is: the tenant (operator keys only), else the
suppliers it may see (a supplier key sees only itself). A storefront key, or an unknown one, is
refused."""

from __future__ import annotations

from aiohttp import web

from backoffice.sessions import STORE, Login, end_visit, visit_of
from backoffice.upstream import UPSTREAM, Upstream
from backoffice.web import render

routes = web.RouteTableDef()
MAX_KEY_LENGTH = 200


async def identify(upstream: Upstream, key: str) -> Login | None:
    tenant = await upstream.call("tenants", "GET", "/v1/admin/tenant", key)
    if tenant.ok:
        return Login(api_key=key, role="operator", label=str(tenant.data["name"]))
    if tenant.status != 403:
        return None
    suppliers = await upstream.call("tenants", "GET", "/v1/admin/suppliers", key)
    if suppliers.ok and len(suppliers.data) == 1:
        supplier = suppliers.data[0]
        return Login(
            api_key=key, role="supplier", label=str(supplier["name"]), supplier_id=supplier["id"]
        )
    return None


def _safe_next(value: str | None) -> str:
    # only a path of this site: never an absolute or scheme-relative URL (open redirect)
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/payments"


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    await visit_of(request)
    return render(request, "login.html", {"next": _safe_next(request.query.get("next"))})


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    key = str(form.get("api_key", "")).strip()
    target = _safe_next(str(form.get("next", "")))
    found = None
    if 0 < len(key) <= MAX_KEY_LENGTH and key.isprintable():
        found = await identify(request.app[UPSTREAM], key)
    if found is None:
        await visit_of(request)
        return render(
            request,
            "login.html",
            {"next": target, "error": "This key is not an operator or supplier key."},
            status=401,
        )
    visit = await visit_of(request, renew=True)
    request.app[STORE].log_in(visit, found)
    raise web.HTTPSeeOther(target)


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    await end_visit(request)
    raise web.HTTPSeeOther("/login")


@routes.get("/")
async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/payments")
