"""Fixtures for the users service against the real Keycloak, PostgreSQL and
RabbitMQ (test database and vhost; Keycloak realm ``exchange`` or, for
two-factor tests, a scratch realm imported from the repo's realm JSON plus the
proposed step-up patch). Every Keycloak user a test creates is deleted after it.
"""
import copy
import json
import os
import sys
import uuid

import psycopg
import pytest
from nameko.containers import ServiceContainer
from nameko.standalone.rpc import ServiceRpcProxy

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from services.common.config import REPO_ROOT  # noqa: E402
from services.common.identity import backend_admin  # noqa: E402
from services.common.migrations import apply_sql_migrations, read_migrations  # noqa: E402
from services.users.service import UsersService  # noqa: E402
from services.wallets.service import WalletsService  # noqa: E402
from stack.servers import render_realm  # noqa: E402
from users_keycloak import PASSWORD, MasterAdmin, password_grant  # noqa: E402
from users_testkit import RPC_TIMEOUT, UsersEvents, new_username, signup_request  # noqa: E402

STEP_UP_PATCH = os.path.join(HERE, "realm_step_up_patch.json")


@pytest.fixture(scope="session", autouse=True)
def users_schema(test_settings):
    """The users migrations, applied to the test database by the tests themselves."""
    with psycopg.connect(test_settings.postgres_dsn()) as conn:
        apply_sql_migrations(conn, read_migrations(
            "users", REPO_ROOT / "services" / "users" / "migrations", "sql"))


@pytest.fixture(scope="session")
def db(test_settings, users_schema):
    """A plain connection to the test database, for assertions (autocommit)."""
    with psycopg.connect(test_settings.postgres_dsn(), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def master(settings):
    return MasterAdmin(settings)


@pytest.fixture(scope="session")
def kc_admin(settings):
    """The backend client's service account on realm ``exchange`` (what the service uses)."""
    return backend_admin(settings)


@pytest.fixture
def kc_cleanup(master, settings):
    """Register ``(realm, user id)`` or a username to delete after the test."""
    created = []
    yield created
    for realm, ident in created:
        try:
            if ident.startswith("username:"):
                found = master.call("GET", f"/{realm}/users",
                                    params={"username": ident[9:], "exact": "true"})
                ids = [u["id"] for u in found]
            else:
                ids = [ident]
            for user_id in ids:
                master.call("DELETE", f"/{realm}/users/{user_id}")
        except AssertionError:
            pass  # already gone (a rollback deleted it)


@pytest.fixture
def users_config(nameko_config):
    config = dict(nameko_config)
    config["EXCHANGE_USERS_WALLETS_TIMEOUT_S"] = "15"
    return config


@pytest.fixture
def start_users(container_factory, users_config):
    """Start the users service (and, unless told otherwise, the real wallets
    service) in this process; returns the config used."""
    def start(wallets: bool = True, **overrides):
        config = {**users_config, **overrides}
        if wallets:
            start.containers.append(container_factory(WalletsService, config))
            start.containers[-1].start()
        start.containers.append(container_factory(UsersService, config))
        start.containers[-1].start()
        return config

    def stop_all():
        while start.containers:
            start.containers.pop().stop()
    start.containers = []
    start.stop_all = stop_all
    return start


@pytest.fixture(scope="module")
def shared_users(test_settings):
    """One users (+ wallets) service for a whole module, for modules whose
    tests need no special configuration: starting containers per test costs
    more than the tests. Do not mix with ``start_users`` in one module (two
    containers named users would share the RPC queue)."""
    config = test_settings.nameko_config()
    config.update({"POSTGRES_DB": test_settings["EXCHANGE_POSTGRES_DB"],
                   "EXCHANGE_USERS_WALLETS_TIMEOUT_S": "15"})
    containers = [ServiceContainer(WalletsService, config), ServiceContainer(UsersService, config)]
    for container in containers:
        container.start()
    try:
        with ServiceRpcProxy("users", config, timeout=RPC_TIMEOUT) as proxy:
            yield proxy
    finally:
        for container in reversed(containers):
            container.kill()   # as nameko's container_factory does: fast


@pytest.fixture(scope="module")
def module_trader(shared_users, master, settings):
    """A signed-up trader shared by a module's tests: ``(username, user_id)``."""
    request = signup_request()
    result = shared_users.sign_up(request)
    yield request["username"], result["user_id"]
    master.call("DELETE", f"/{settings['EXCHANGE_KEYCLOAK_REALM']}/users/{result['user_id']}")


@pytest.fixture
def users_rpc(start_users):
    config = start_users()
    with ServiceRpcProxy("users", config, timeout=RPC_TIMEOUT) as proxy:
        yield proxy


@pytest.fixture
def sign_up(kc_cleanup, settings):
    """Sign a new user up through the service; the Keycloak user is cleaned up."""
    def run(rpc, realm=None, **overrides):
        request = signup_request(**overrides)
        kc_cleanup.append((realm or settings["EXCHANGE_KEYCLOAK_REALM"],
                           f"username:{request['username']}"))
        return rpc.sign_up(request), request
    return run


@pytest.fixture
def token_for(settings):
    """An access token from Keycloak (password grant of the backend client)."""
    def get(username, password=PASSWORD, realm=None, otp=None):
        response = password_grant(settings, realm or settings["EXCHANGE_KEYCLOAK_REALM"],
                                  settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_ID"],
                                  settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_SECRET"],
                                  username, password, otp=otp)
        assert response.status_code == 200, response.text
        return response.json()["access_token"]
    return get


@pytest.fixture
def admin_token(kc_admin, kc_cleanup, settings, token_for):
    """A realm user with the ``admin`` role (an operator: no local profile)."""
    username = new_username("ut-admin")
    user_id = kc_admin.create_user({
        "username": username, "email": f"{username}@example.test", "enabled": True,
        "firstName": "Ops", "lastName": "Admin", "emailVerified": True,
        "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}]})
    kc_cleanup.append((settings["EXCHANGE_KEYCLOAK_REALM"], user_id))
    kc_admin.assign_realm_roles(user_id, [kc_admin.get_realm_role("admin")])
    return token_for(username)


@pytest.fixture
def users_events(container_factory, nameko_config):
    container = container_factory(UsersEvents, nameko_config)
    container.start()
    UsersEvents.received.clear()
    return container


@pytest.fixture(scope="session")
def step_up_realm(settings, master):
    """A scratch realm: the repo's keycloak/exchange-realm.json, rendered as
    `make up` does, plus tests/integration/users/realm_step_up_patch.json (the
    change this service asks for). Deleted at the end of the session."""
    name = f"userstest{uuid.uuid4().hex[:8]}"
    realm = json.loads(render_realm(settings.with_overrides(EXCHANGE_KEYCLOAK_REALM=name)))
    realm = apply_step_up_patch(realm)
    master.call("POST", "", json=realm)
    yield name
    master.call("DELETE", f"/{name}")


def apply_step_up_patch(realm: dict) -> dict:
    """Merge the patch into a realm representation (idempotent: a realm that
    already has the patch's flows and mappers stays as it is)."""
    with open(STEP_UP_PATCH) as f:
        patch = json.load(f)
    realm = copy.deepcopy(realm)
    for key, value in patch.items():
        if key in ("_comment", "clientProtocolMappers", "authenticatorConfig",
                   "authenticationFlows"):
            continue
        realm[key] = value
    for key in ("authenticatorConfig", "authenticationFlows"):
        have = {item["alias"] for item in realm.get(key, [])}
        realm.setdefault(key, []).extend(i for i in patch[key] if i["alias"] not in have)
    for client in realm["clients"]:
        mappers = client.setdefault("protocolMappers", [])
        have = {m["name"] for m in mappers}
        mappers.extend(m for m in patch["clientProtocolMappers"] if m["name"] not in have)
    return realm
