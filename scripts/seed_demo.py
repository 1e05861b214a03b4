"""Create the demo tenant through the tenants service's API, as an operator would.

Usage: python scripts/seed_demo.py [--url URL] [--admin-key KEY] [--out FILE]
The URL and the platform admin key default to MARKETPAY_TENANTS_URL (else
http://127.0.0.1:8086) and MARKETPAY_PLATFORM_ADMIN_KEY. Creates "Demo Marketplace"
(merchant account DemoMarketplaceECOM, EUR, default rate 2.5 %, capture on shipment), three
suppliers with commission rates, a storefront key and a supplier key, and writes the keys as
JSON to --out. Run again, it repairs the demo instead of keeping dead keys: with --out naming
the keys of an earlier run, every key that no longer works (revoked, or the database was reset)
is replaced by a working one (an operator key through the platform admin's
/v1/platform/tenants/{id}/api-keys), and the file rewritten. Without a keys file, an existing demo
tenant is left alone (its keys were shown once, by the first run).
With --sandbox-url and --webhooks-url it also gives the PSP sandbox the demo merchant account
(signing its webhooks with the local-development HMAC key, sent to --webhook-target) and the
webhooks service the same key; with --republish it has the tenants service publish every
tenant's state again for replicas of services added since.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

MERCHANT_ACCOUNT = "DemoMarketplaceECOM"
# the demo merchant account's webhook HMAC key: local development only, never a real one
DEMO_HMAC_KEY = "6c6f63616c2d646576656c6f706d656e742d64656d6f2d686d61632d6b657921"
WEBHOOK_PATH = "/v1/webhooks/psp/adyen"
SUPPLIERS = [
    ("Bolt & Nut Industrial", "DE89370400440532013000", "10"),
    ("Atelier Fournitures", "FR1420041010050500013M02606", "12.5"),
    ("Dutch Packaging BV", "NL91ABNA0417164300", "8"),
]


class ApiFailure(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


def call(base: str, method: str, path: str, key: str | None, body: Any = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own argument
        base.rstrip("/") + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers=headers,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            payload = json.loads(response.read())
            return payload.get("data", payload) if isinstance(payload, dict) else payload
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = raw.decode(errors="replace")
        raise ApiFailure(exc.code, payload) from None


def seed(base: str, admin_key: str) -> dict[str, Any] | None:
    """The demo tenant's keys, or None when the demo tenant exists already."""
    try:
        tenant = call(
            base,
            "POST",
            "/v1/platform/tenants",
            admin_key,
            {
                "name": "Demo Marketplace",
                "merchant_account": MERCHANT_ACCOUNT,
                "psp": "adyen",
                "currency": "EUR",
                "settings": {"default_rate": "2.5", "capture_mode": "ON_SHIPMENT"},
            },
        )
    except ApiFailure as exc:
        if exc.status == 409:
            return None
        raise
    return populate(base, tenant["id"], tenant["api_key"])


def populate(base: str, tenant_id: str, operator: str) -> dict[str, Any]:
    """The demo tenant's suppliers, commission lines and keys."""
    suppliers = []
    for name, iban, rate in SUPPLIERS:
        supplier = call(
            base,
            "POST",
            "/v1/admin/suppliers",
            operator,
            {"name": name, "iban": iban, "kyc_status": "enabled"},
        )
        call(base, "PUT", f"/v1/admin/commissions/{supplier['id']}", operator, {"rate": rate})
        suppliers.append({"id": supplier["id"], "name": name, "commission_rate": rate})
    storefront = new_key(base, operator, "storefront", "demo shop")
    supplier_key = new_key(base, operator, f"supplier:{suppliers[0]['id']}", "demo supplier")
    return {
        "tenant_id": tenant_id,
        "merchant_account": MERCHANT_ACCOUNT,
        "operator_key": operator,
        "storefront_key": storefront,
        "supplier_key": supplier_key,
        "supplier_id": suppliers[0]["id"],
        "suppliers": suppliers,
    }


def recover(base: str, admin_key: str) -> dict[str, Any]:
    """The keys of a demo tenant that exists while this machine has no keys file (another
    checkout's `make up` made it, or the file was removed): the platform admin issues it a new
    operator key, which issues the storefront and supplier keys."""
    found = call(
        base, "GET", f"/v1/platform/tenants?merchant_account={MERCHANT_ACCOUNT}", admin_key
    )
    tenant_id = found[0]["id"]
    issued = call(
        base,
        "POST",
        f"/v1/platform/tenants/{tenant_id}/api-keys",
        admin_key,
        {"role": "operator", "name": "demo operator (recovered)"},
    )
    operator = issued["key"]
    listed = call(base, "GET", "/v1/admin/suppliers?limit=100", operator)
    rates = {name: rate for name, _, rate in SUPPLIERS}
    suppliers = [
        {"id": s["id"], "name": s["name"], "commission_rate": rates.get(s["name"])}
        for s in reversed(listed)  # oldest first, as seeded
    ]
    return {
        "tenant_id": tenant_id,
        "merchant_account": MERCHANT_ACCOUNT,
        "operator_key": operator,
        "storefront_key": new_key(base, operator, "storefront", "demo shop"),
        "supplier_key": new_key(base, operator, f"supplier:{suppliers[0]['id']}", "demo supplier"),
        "supplier_id": suppliers[0]["id"],
        "suppliers": suppliers,
    }


def new_key(base: str, operator: str, role: str, name: str) -> str:
    key: str = call(base, "POST", "/v1/admin/api-keys", operator, {"role": role, "name": name})[
        "key"
    ]
    return key


def works(base: str, path: str, key: str, allowed: tuple[int, ...] = (200,)) -> bool:
    """Whether the tenants service still knows the key (401 means it does not: revoked or
    unknown, e.g. after a database reset)."""
    try:
        call(base, "GET", path, key)
        return 200 in allowed
    except ApiFailure as exc:
        if exc.status == 401:
            return False
        if exc.status in allowed:
            return True
        raise


def repair(base: str, admin_key: str, keys: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The keys of an earlier run, each dead one replaced; and what was replaced."""
    operator = keys["operator_key"]
    if not works(base, "/v1/admin/tenant", operator):
        fresh = seed(base, admin_key)
        if fresh is not None:  # the database was reset: a new demo tenant
            return fresh, ["tenant"]
        try:
            issued = call(
                base,
                "POST",
                f"/v1/platform/tenants/{keys['tenant_id']}/api-keys",
                admin_key,
                {"role": "operator", "name": "demo operator (repaired)"},
            )
        except ApiFailure as exc:
            if exc.status == 404:
                raise ApiFailure(
                    404,
                    f"{MERCHANT_ACCOUNT} belongs to a tenant other than {keys['tenant_id']}"
                    " of the keys file: remove the file and the tenant, or restore the file",
                ) from None
            raise
        keys = {**keys, "operator_key": issued["key"]}
        replaced = ["operator_key"]
    else:
        replaced = []
    operator = keys["operator_key"]
    supplier_path = f"/v1/admin/suppliers/{keys['supplier_id']}"
    # a storefront key may not read suppliers (403), but a 403 says the key is known
    if not works(base, supplier_path, keys["storefront_key"], allowed=(403,)):
        keys = {**keys, "storefront_key": new_key(base, operator, "storefront", "demo shop")}
        replaced.append("storefront_key")
    if not works(base, supplier_path, keys["supplier_key"]):
        role = f"supplier:{keys['supplier_id']}"
        keys = {**keys, "supplier_key": new_key(base, operator, role, "demo supplier")}
        replaced.append("supplier_key")
    return keys, replaced


def connect_psp(sandbox_url: str, webhooks_url: str, target: str, operator: str) -> None:
    """The demo merchant account at the PSP sandbox, and its HMAC key at the webhooks service
    (200 when the key is active already); the webhooks service may still be learning of the
    tenant from its replica, so a 4xx is retried for a while."""
    call(
        sandbox_url,
        "POST",
        "/sandbox/merchant-accounts",
        None,
        {"merchant_account": MERCHANT_ACCOUNT, "hmac_key": DEMO_HMAC_KEY, "webhook_url": target},
    )
    body = {"merchant_account": MERCHANT_ACCOUNT, "key": DEMO_HMAC_KEY}
    for attempt in range(40):
        try:
            call(webhooks_url, "PUT", "/v1/admin/webhooks/hmac-keys", operator, body)
            return
        except ApiFailure:
            if attempt == 39:
                raise
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default=os.environ.get("MARKETPAY_TENANTS_URL", "http://127.0.0.1:8086")
    )
    parser.add_argument("--admin-key", default=os.environ.get("MARKETPAY_PLATFORM_ADMIN_KEY"))
    parser.add_argument("--out", type=Path, help="write the demo keys here as JSON")
    parser.add_argument("--sandbox-url", help="the PSP sandbox: give it the demo merchant account")
    parser.add_argument("--webhooks-url", help="the webhooks service: give it the demo HMAC key")
    parser.add_argument(
        "--webhook-target", help="where the sandbox sends webhooks (default: --webhooks-url's)"
    )
    parser.add_argument(
        "--republish", action="store_true", help="have tenants publish every tenant again"
    )
    args = parser.parse_args(argv)
    if not args.admin_key:
        parser.error(
            "the platform admin key is needed (--admin-key or MARKETPAY_PLATFORM_ADMIN_KEY)"
        )
    earlier = None
    if args.out and args.out.exists():
        try:
            earlier = json.loads(args.out.read_text())
        except ValueError:
            earlier = None
    try:
        replaced: list[str] = []
        keys: dict[str, Any] | None
        if earlier is not None:
            keys, replaced = repair(args.url, args.admin_key, earlier)
        else:
            keys = seed(args.url, args.admin_key)
            if keys is None and args.out:  # the tenant exists, its keys are not here
                keys = recover(args.url, args.admin_key)
                replaced = ["every key (no keys file)"]
        if args.republish:
            call(args.url, "POST", "/v1/platform/replicas/republish", args.admin_key)
        if keys is not None and args.sandbox_url and args.webhooks_url:
            target = args.webhook_target or args.webhooks_url.rstrip("/") + WEBHOOK_PATH
            connect_psp(args.sandbox_url, args.webhooks_url, target, keys["operator_key"])
    except ApiFailure as exc:
        print(f"seeding failed: {exc}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"a service is not reachable: {exc.reason}", file=sys.stderr)
        return 1
    if keys is None:
        print(f"the demo tenant ({MERCHANT_ACCOUNT}) exists already, nothing to do")
        return 0
    if earlier is not None and not replaced:
        print(f"the demo tenant's keys in {args.out} work")
        return 0
    if replaced:
        print(f"replaced what no longer worked: {', '.join(replaced)}")
    text = json.dumps(keys, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        args.out.chmod(0o600)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
