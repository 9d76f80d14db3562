"""The registry on the real stack: a registry container on the test vhost,
and real Keycloak tokens: a throw-away person with the realm role admin, a
trader, and the backend client's service account."""
import uuid

import pytest
import requests
from nameko.standalone.rpc import ServiceRpcProxy

from services.common.identity import backend_admin, backend_openid
from services.registry.service import RegistryService

PASSWORD = "registry-test-password-local-dev-only"


@pytest.fixture(scope="session")
def keycloak_users(test_settings):
    """Creates realm users for the session's tests; deletes them at the end."""
    admin = backend_admin(test_settings)
    created = []

    def make(role: str) -> str:
        username = f"reg-{role}-{uuid.uuid4().hex[:10]}"
        user_id = admin.create_user({
            "username": username, "email": f"{username}@test.invalid", "firstName": "Registry",
            "lastName": role.title(), "enabled": True, "emailVerified": True,
            "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}]})
        created.append(user_id)
        admin.assign_realm_roles(user_id, [admin.get_realm_role(role)])
        return username
    yield make
    for user_id in created:
        admin.delete_user(user_id)


def token_of(settings, username: str) -> str:
    return backend_openid(settings).token(username, PASSWORD)["access_token"]


@pytest.fixture(scope="session")
def admin_name(keycloak_users):
    return keycloak_users("admin")


@pytest.fixture
def admin_token(test_settings, admin_name):
    return token_of(test_settings, admin_name)


@pytest.fixture
def trader_token(test_settings, keycloak_users):
    return token_of(test_settings, keycloak_users("trader"))


@pytest.fixture
def service_account_token(test_settings):
    response = requests.post(
        f"{test_settings.keycloak_issuer}/protocol/openid-connect/token",
        data={"grant_type": "client_credentials",
              "client_id": test_settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_ID"],
              "client_secret": test_settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_SECRET"]},
        timeout=30)
    response.raise_for_status()
    return response.json()["access_token"]


@pytest.fixture
def registry(container_factory, nameko_config):
    container_factory(RegistryService, nameko_config).start()
    with ServiceRpcProxy("registry", nameko_config, timeout=30) as proxy:
        yield proxy


def new_asset_symbol() -> str:
    return f"A{uuid.uuid4().hex[:9].upper()}"
