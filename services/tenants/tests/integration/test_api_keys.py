"""API keys: shown once, stored as hashes, listed by prefix, revoked with an event."""

from __future__ import annotations

from common.http.auth import hash_key


async def test_operator_creates_keys_of_each_role_shown_once(tenants):
    # given
    tenant = await tenants.new_tenant()
    supplier = await tenants.new_supplier(tenant)

    # when
    created = [
        await tenants.call(
            "POST", "/v1/admin/api-keys", tenant.operator_key, json={"role": role, "name": role}
        )
        for role in ("operator", "storefront", f"supplier:{supplier['id']}")
    ]

    # then
    assert [c.status for c in created] == [201, 201, 201]
    keys = [c.data for c in created]
    assert [k["role"] for k in keys] == ["operator", "storefront", f"supplier:{supplier['id']}"]
    assert keys[2]["supplier_id"] == supplier["id"]
    for key in keys:
        assert key["id"].startswith("key_")
        assert key["key"].startswith("test_")
        assert key["prefix"] == key["key"][:12]
    stored = {r["key_hash"] for r in await tenants.fetch("SELECT key_hash FROM api_keys")}
    assert {hash_key(k["key"]) for k in keys} <= stored
    assert not {k["key"] for k in keys} & stored
    events = [e["data"] for e in await tenants.events() if e["type"] == "api_key.upserted"]
    assert [(e["role"], e["supplier_id"]) for e in events[1:]] == [
        ("operator", None),
        ("storefront", None),
        ("supplier", supplier["id"]),
    ]


async def test_the_key_list_shows_prefixes_never_keys_or_hashes(tenants):
    # given
    tenant = await tenants.new_tenant()
    storefront = await tenants.new_key(tenant, "storefront")

    # when
    listed = await tenants.call("GET", "/v1/admin/api-keys", tenant.operator_key)

    # then
    assert listed.status == 200
    assert [k["role"] for k in listed.data] == ["storefront", "operator"]
    assert listed.data[0]["prefix"] == storefront[:12]
    text = str(listed.body)
    assert storefront not in text
    assert tenant.operator_key not in text
    assert hash_key(storefront) not in text
    assert all("key" not in k and "key_hash" not in k for k in listed.data)


async def test_a_supplier_key_needs_a_supplier_of_the_tenant(tenants):
    # given
    tenant = await tenants.new_tenant()
    other = await tenants.new_tenant()
    foreign = await tenants.new_supplier(other)
    before = await tenants.outbox_count()

    # when
    created = await tenants.call(
        "POST",
        "/v1/admin/api-keys",
        tenant.operator_key,
        json={"role": f"supplier:{foreign['id']}"},
    )
    bad_role = await tenants.call(
        "POST", "/v1/admin/api-keys", tenant.operator_key, json={"role": "admin"}
    )

    # then
    assert created.status == 422
    assert created.error == {
        "code": "supplier_unknown",
        "message": created.error["message"],
        "param": "role",
    }
    assert bad_role.status == 422
    assert bad_role.error["code"] == "role_invalid"
    assert await tenants.outbox_count() == before


async def test_a_revoked_key_is_refused_and_its_revocation_published(tenants):
    # given
    tenant = await tenants.new_tenant()
    created = await tenants.call(
        "POST", "/v1/admin/api-keys", tenant.operator_key, json={"role": "operator"}
    )
    key, key_id = created.data["key"], created.data["id"]
    assert (await tenants.call("GET", "/v1/admin/tenant", key)).status == 200

    # when
    revoked = await tenants.call("DELETE", f"/v1/admin/api-keys/{key_id}", tenant.operator_key)

    # then
    assert revoked.status == 200
    assert revoked.data["revoked_at"] is not None
    assert (await tenants.call("GET", "/v1/admin/tenant", key)).status == 401
    events = await tenants.events(key_id)
    assert [(e["data"]["revision"], e["data"]["revoked"]) for e in events] == [
        (1, False),
        (2, True),
    ]
    again = await tenants.call("DELETE", f"/v1/admin/api-keys/{key_id}", tenant.operator_key)
    assert again.status == 200
    assert len(await tenants.events(key_id)) == 2


async def test_the_last_operator_key_cannot_be_revoked_but_a_key_may_revoke_itself(tenants):
    # given
    tenant = await tenants.new_tenant()
    first_id = tenant.body["api_key_id"]

    # when
    last = await tenants.call("DELETE", f"/v1/admin/api-keys/{first_id}", tenant.operator_key)
    second = await tenants.new_key(tenant, "operator")
    itself = await tenants.call("DELETE", f"/v1/admin/api-keys/{first_id}", tenant.operator_key)

    # then
    assert last.status == 409
    assert last.error["code"] == "last_operator_key"
    assert itself.status == 200
    assert (await tenants.call("GET", "/v1/admin/tenant", tenant.operator_key)).status == 401
    assert (await tenants.call("GET", "/v1/admin/tenant", second)).status == 200
