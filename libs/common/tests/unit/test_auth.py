"""API keys (DESIGN §4): random, prefixed, stored as hashes; the platform-admin key from config."""

import pytest
from pydantic import SecretStr

from common.http.auth import Authenticator, Principal, generate_key, hash_key

OPERATOR_KEY = "test_operator-key"
ADMIN_KEY = "live_platform-admin-key"


@pytest.mark.parametrize("environment", ["test", "live"])
def test_generated_keys_carry_their_environment_and_are_random(environment):
    # when
    keys = {generate_key(environment) for _ in range(50)}
    # then
    assert len(keys) == 50
    for key in keys:
        assert key.startswith(f"{environment}_")
        assert len(key) > 40


def test_hash_key_is_a_stable_sha256():
    # when / then: stored hashes must not change between releases
    assert (
        hash_key("test_abc") == "58202dd7ce2a6335836a577b09ef8a43bf0440b28d181e8ce838dbe5b2206931"
    )
    assert hash_key("test_abc") != hash_key("test_abd")


def lookup_of(keys: dict[str, Principal]):
    async def lookup(digest: str) -> Principal | None:
        return keys.get(digest)

    return lookup


OPERATOR = Principal(role="operator", tenant_id="ten_1", key_id="key_1")


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwdw==", "Token test_operator-key",
     "Bearer test_unknown", "Bearer " + "x" * 500, OPERATOR_KEY],
)  # fmt: skip
async def test_no_wrong_or_unknown_credentials_authenticate_nobody(header):
    # given
    auth = Authenticator(lookup_of({hash_key(OPERATOR_KEY): OPERATOR}))
    # when / then
    assert await auth.authenticate(header) is None


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_a_known_key_authenticates_its_principal(scheme):
    # given
    auth = Authenticator(lookup_of({hash_key(OPERATOR_KEY): OPERATOR}))
    # when / then
    assert await auth.authenticate(f"{scheme} {OPERATOR_KEY}") == OPERATOR


async def test_the_lookup_sees_only_the_hash():
    # given
    seen: list[str] = []

    async def lookup(digest: str) -> Principal | None:
        seen.append(digest)
        return None

    # when
    await Authenticator(lookup).authenticate(f"Bearer {OPERATOR_KEY}")
    # then
    assert seen == [hash_key(OPERATOR_KEY)]


async def test_the_platform_admin_key_from_configuration_is_a_platform_admin():
    # given
    auth = Authenticator(lookup_of({}), platform_admin_key=SecretStr(ADMIN_KEY))
    # when
    principal = await auth.authenticate(f"Bearer {ADMIN_KEY}")
    # then
    assert principal == Principal(role="platform_admin", tenant_id=None)
    assert principal.scope == "platform"
    assert await auth.authenticate(f"Bearer {ADMIN_KEY}x") is None


async def test_without_a_configured_admin_key_there_is_no_platform_admin():
    # given
    auth = Authenticator(lookup_of({}))
    # when / then
    assert await auth.authenticate(f"Bearer {ADMIN_KEY}") is None
