"""Fixtures shared by the e2e tests."""
import uuid

import pytest

from tests.e2e.memcached_kit import kill_memcached, start_memcached

OPERATOR_PASSWORD = "operator-Password-local-dev-only-1"


@pytest.fixture
def operator_token(settings):
    """An access token of a realm user with the ``admin`` role (an operator),
    deleted afterwards."""
    from services.common.identity import backend_admin, backend_openid
    admin = backend_admin(settings)
    username = f"e2e-ops-{uuid.uuid4().hex[:8]}"
    user_id = admin.create_user({
        "username": username, "email": f"{username}@example.test", "enabled": True,
        "firstName": "Ops", "lastName": "Admin", "emailVerified": True,
        "credentials": [{"type": "password", "value": OPERATOR_PASSWORD, "temporary": False}]})
    admin.assign_realm_roles(user_id, [admin.get_realm_role("admin")])
    yield backend_openid(settings).token(username, OPERATOR_PASSWORD)["access_token"]
    admin.delete_user(user_id)


@pytest.fixture
def memcached_killed(settings):
    kill_memcached(settings)
    yield
    start_memcached(settings)
