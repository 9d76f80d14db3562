"""Hostile text and numbers of issue 11 against the users service over RPC:
each is refused with ``INVALID_REQUEST`` naming the field, and nothing is
created (no sign-up row, no Keycloak user, no API key).

What the code before the strict grammar did with each (the regression): a
sign-up password containing NUL was accepted (the user was created); an API
key label containing NUL reached PostgreSQL and came back as ``DataError``;
``expires_at=10**30`` gave ``OverflowError``."""
import pytest

from services.users.errors import UsersError
from users_keycloak import PASSWORD, password_grant
from users_testkit import signup_request


@pytest.fixture(scope="module")
def users_rpc(shared_users):
    return shared_users


@pytest.fixture(scope="module")
def owner_token(module_trader, settings):
    response = password_grant(settings, settings["EXCHANGE_KEYCLOAK_REALM"],
                              settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_ID"],
                              settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_SECRET"],
                              module_trader[0], PASSWORD)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def test_a_sign_up_password_containing_nul_is_refused_and_nobody_is_created(
        users_rpc, db, master, settings, kc_cleanup):
    request = signup_request(password="correct-horse\x00battery-1")
    kc_cleanup.append((settings["EXCHANGE_KEYCLOAK_REALM"], f"username:{request['username']}"))
    with pytest.raises(UsersError) as raised:
        users_rpc.sign_up(request)
    assert raised.value.code == "INVALID_REQUEST", raised.value
    assert "password" in raised.value.message
    assert "battery" not in raised.value.message, "the refusal does not echo the password"
    assert db.execute("SELECT count(*) FROM users.signups WHERE username = %s",
                      (request["username"],)).fetchone()[0] == 0
    assert master.call("GET", f"/{settings['EXCHANGE_KEYCLOAK_REALM']}/users",
                       params={"username": request["username"], "exact": "true"}) == []


@pytest.mark.parametrize("request_, field", [
    ({"label": "bot\x00"}, "label"),
    ({"label": "bot", "expires_at": 10 ** 30}, "expires_at"),
])
def test_an_api_key_request_with_a_hostile_value_is_refused_and_creates_no_key(
        users_rpc, owner_token, module_trader, db, request_, field):
    def keys():
        return db.execute("SELECT count(*) FROM users.api_keys WHERE user_id = %s",
                          (module_trader[1],)).fetchone()[0]
    before = keys()
    with pytest.raises(UsersError) as raised:
        users_rpc.create_api_key(owner_token, request_)
    assert raised.value.code == "INVALID_REQUEST", raised.value
    assert field in raised.value.message, raised.value
    assert keys() == before
