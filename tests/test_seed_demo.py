"""`scripts/seed_demo.py` against a real tenants service: it creates the demo tenant, writes
its keys, and a second run changes nothing."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import secrets
from pathlib import Path

import aiohttp
import pytest_asyncio

from common.testing.apps import running
from tenants.app import create_app
from tenants.settings import Settings

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "seed_demo.py"


def load_script():
    spec = importlib.util.spec_from_file_location("seed_demo", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest_asyncio.fixture
async def tenants_service(servers, service_db, broker_names):
    admin_key = f"test_platform_{secrets.token_hex(8)}"
    settings = Settings(
        profile="test",
        database_url=service_db.dsn,
        db_schema=service_db.schema,
        amqp_url=servers.amqp_url,
        broker_namespace=broker_names.namespace,
        broker_queue_expires_ms=broker_names.queue_expires_ms,
        platform_admin_key=admin_key,
    )
    async with running(create_app(settings)) as url:
        yield url, admin_key


async def test_seed_demo_creates_the_demo_tenant_once(tenants_service, tmp_path, capsys):
    # given
    url, admin_key = tenants_service
    seed = load_script()
    out = tmp_path / "keys.json"

    # when
    first = await asyncio.to_thread(
        seed.main, ["--url", url, "--admin-key", admin_key, "--out", str(out)]
    )
    second = await asyncio.to_thread(seed.main, ["--url", url, "--admin-key", admin_key])

    # then
    assert (first, second) == (0, 0)
    assert "exists already" in capsys.readouterr().out
    keys = json.loads(out.read_text())
    headers = {"Authorization": f"Bearer {keys['operator_key']}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(url + "/v1/admin/tenant") as response:
            tenant = (await response.json())["data"]
        async with http.get(url + "/v1/admin/commissions") as response:
            commissions = (await response.json())["data"]
        async with http.get(url + "/v1/admin/suppliers") as response:
            suppliers = (await response.json())["data"]
    assert tenant["merchant_account"] == "DemoMarketplaceECOM"
    assert tenant["currency"] == "EUR"
    assert tenant["settings"]["default_rate"] == "2.5"
    assert tenant["settings"]["capture_mode"] == "ON_SHIPMENT"
    assert sorted(c["rate"] for c in commissions) == ["10", "12.5", "8"]
    assert len(suppliers) == 3
    assert all(s["iban"] for s in suppliers)
    for role_key, expected in (("storefront_key", 403), ("supplier_key", 200)):
        own = {"Authorization": f"Bearer {keys[role_key]}"}
        async with (
            aiohttp.ClientSession(headers=own) as http,
            http.get(url + f"/v1/admin/suppliers/{keys['supplier_id']}") as response,
        ):
            assert response.status == expected


async def status_of(url: str, path: str, key: str) -> int:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http,
        http.get(url + path) as response,
    ):
        return response.status


async def test_seed_demo_replaces_revoked_keys(tenants_service, tmp_path, capsys):
    # given a demo whose newcomer made an operator key of their own, then revoked the demo's
    # operator key and its storefront key
    url, admin_key = tenants_service
    seed = load_script()
    out = tmp_path / "keys.json"
    assert (
        await asyncio.to_thread(
            seed.main, ["--url", url, "--admin-key", admin_key, "--out", str(out)]
        )
        == 0
    )
    keys = json.loads(out.read_text())
    operator = {"Authorization": f"Bearer {keys['operator_key']}"}
    async with aiohttp.ClientSession(headers=operator) as http:
        async with http.post(url + "/v1/admin/api-keys", json={"role": "operator"}) as response:
            assert response.status == 201
            newcomer = {"Authorization": f"Bearer {(await response.json())['data']['key']}"}
        async with http.get(url + "/v1/admin/api-keys") as response:
            listed = (await response.json())["data"]
    demo_ids = [
        k["id"]
        for k in listed
        if any(keys[n].startswith(k["prefix"]) for n in ("operator_key", "storefront_key"))
    ]
    assert len(demo_ids) == 2
    async with aiohttp.ClientSession(headers=newcomer) as http:
        for key_id in demo_ids:
            async with http.delete(url + f"/v1/admin/api-keys/{key_id}") as response:
                assert response.status == 200
    assert await status_of(url, "/v1/admin/tenant", keys["operator_key"]) == 401
    capsys.readouterr()

    # when make up seeds again
    code = await asyncio.to_thread(
        seed.main, ["--url", url, "--admin-key", admin_key, "--out", str(out)]
    )

    # then the dead keys were replaced by working ones of the same tenant; the live one kept
    assert code == 0
    assert "replaced what no longer worked: operator_key, storefront_key" in capsys.readouterr().out
    repaired = json.loads(out.read_text())
    assert repaired["tenant_id"] == keys["tenant_id"]
    assert repaired["supplier_key"] == keys["supplier_key"]
    assert repaired["operator_key"] != keys["operator_key"]
    assert await status_of(url, "/v1/admin/tenant", repaired["operator_key"]) == 200
    supplier = f"/v1/admin/suppliers/{repaired['supplier_id']}"
    assert await status_of(url, supplier, repaired["storefront_key"]) == 403
    # and a third run finds them working and changes nothing
    assert (
        await asyncio.to_thread(
            seed.main, ["--url", url, "--admin-key", admin_key, "--out", str(out)]
        )
        == 0
    )
    assert "work" in capsys.readouterr().out
    assert json.loads(out.read_text()) == repaired


async def test_seed_demo_recreates_the_demo_after_a_database_reset(tenants_service, tmp_path):
    # given keys of a demo in a database that no longer has it (reset since)
    url, admin_key = tenants_service
    seed = load_script()
    out = tmp_path / "keys.json"
    stale = {
        "tenant_id": "ten_gone",
        "merchant_account": "DemoMarketplaceECOM",
        "operator_key": "mp_test_" + "0" * 40,
        "storefront_key": "mp_test_" + "1" * 40,
        "supplier_key": "mp_test_" + "2" * 40,
        "supplier_id": "sup_gone",
        "suppliers": [],
    }
    out.write_text(json.dumps(stale))

    # when
    code = await asyncio.to_thread(
        seed.main, ["--url", url, "--admin-key", admin_key, "--out", str(out)]
    )

    # then a new demo tenant with working keys replaces the dead ones
    assert code == 0
    keys = json.loads(out.read_text())
    assert keys["tenant_id"] != "ten_gone"
    assert await status_of(url, "/v1/admin/tenant", keys["operator_key"]) == 200
    supplier = f"/v1/admin/suppliers/{keys['supplier_id']}"
    assert await status_of(url, supplier, keys["supplier_key"]) == 200


async def test_seed_demo_recovers_keys_of_a_demo_made_elsewhere(tenants_service, tmp_path):
    # given a demo tenant made by another checkout (its keys file is not on this machine)
    url, admin_key = tenants_service
    seed = load_script()
    elsewhere = tmp_path / "elsewhere.json"
    assert (
        await asyncio.to_thread(
            seed.main, ["--url", url, "--admin-key", admin_key, "--out", str(elsewhere)]
        )
        == 0
    )
    made = json.loads(elsewhere.read_text())
    out = tmp_path / "keys.json"

    # when this checkout's make up seeds
    code = await asyncio.to_thread(
        seed.main, ["--url", url, "--admin-key", admin_key, "--out", str(out)]
    )

    # then it writes new working keys of the same tenant and the same first supplier
    assert code == 0
    keys = json.loads(out.read_text())
    assert (keys["tenant_id"], keys["supplier_id"]) == (made["tenant_id"], made["supplier_id"])
    assert keys["operator_key"] != made["operator_key"]
    assert await status_of(url, "/v1/admin/tenant", keys["operator_key"]) == 200
    supplier = f"/v1/admin/suppliers/{keys['supplier_id']}"
    assert await status_of(url, supplier, keys["supplier_key"]) == 200
    assert await status_of(url, supplier, keys["storefront_key"]) == 403
    # and the platform admin finds the tenant by its merchant account, nobody else does
    query = "/v1/platform/tenants?merchant_account=DemoMarketplaceECOM"
    assert await status_of(url, query, keys["operator_key"]) in (401, 403)
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin_key}"}) as http,
        http.get(url + query) as response,
    ):
        assert response.status == 200
        assert [t["id"] for t in (await response.json())["data"]] == [made["tenant_id"]]
