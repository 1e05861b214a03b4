"""Create the demo tenant through the tenants service's API, as an operator would.

Usage: python scripts/seed_demo.py [--url URL] [--admin-key KEY] [--out FILE]
The URL and the platform admin key default to MARKETPAY_TENANTS_URL (else
http://127.0.0.1:8086) and MARKETPAY_PLATFORM_ADMIN_KEY. Creates "Demo Marketplace"
(merchant account DemoMarketplaceECOM, EUR, default rate 2.5 %, capture on shipment), three
suppliers with commission rates, a storefront key and a supplier key, and writes the keys as
JSON to --out. Running it again when the merchant account exists changes nothing and exits 0
(the keys were shown once, by the first run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

MERCHANT_ACCOUNT = "DemoMarketplaceECOM"
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


def call(base: str, method: str, path: str, key: str, body: Any = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 - the URL is the operator's own argument
        base.rstrip("/") + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())["data"]
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
    operator = tenant["api_key"]
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
    storefront = call(
        base, "POST", "/v1/admin/api-keys", operator, {"role": "storefront", "name": "demo shop"}
    )
    supplier_key = call(
        base,
        "POST",
        "/v1/admin/api-keys",
        operator,
        {"role": f"supplier:{suppliers[0]['id']}", "name": "demo supplier"},
    )
    return {
        "tenant_id": tenant["id"],
        "merchant_account": MERCHANT_ACCOUNT,
        "operator_key": operator,
        "storefront_key": storefront["key"],
        "supplier_key": supplier_key["key"],
        "supplier_id": suppliers[0]["id"],
        "suppliers": suppliers,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default=os.environ.get("MARKETPAY_TENANTS_URL", "http://127.0.0.1:8086")
    )
    parser.add_argument("--admin-key", default=os.environ.get("MARKETPAY_PLATFORM_ADMIN_KEY"))
    parser.add_argument("--out", type=Path, help="write the demo keys here as JSON")
    args = parser.parse_args(argv)
    if not args.admin_key:
        parser.error(
            "the platform admin key is needed (--admin-key or MARKETPAY_PLATFORM_ADMIN_KEY)"
        )
    try:
        keys = seed(args.url, args.admin_key)
    except ApiFailure as exc:
        print(f"seeding failed: {exc}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"tenants service not reachable at {args.url}: {exc.reason}", file=sys.stderr)
        return 1
    if keys is None:
        where = f"; its keys are in {args.out}" if args.out and args.out.exists() else ""
        print(f"the demo tenant ({MERCHANT_ACCOUNT}) exists already, nothing to do{where}")
        return 0
    text = json.dumps(keys, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        args.out.chmod(0o600)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
