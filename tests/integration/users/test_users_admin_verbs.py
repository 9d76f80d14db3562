"""Each admin verb of the users service (freeze, unfreeze, close a user; read
the audit log) called without credentials, with a garbage token, with a
trader's token and with the backend's service-account token: refused with
its code and nothing changed; with an admin's token: accepted (issue 11).
The token is the verb's first argument (docs/security.md)."""
import pytest

from services.users.errors import UsersError
from tests.integration.identity_kit import principal_tokens  # noqa: F401 (fixture)
from users_testkit import signup_request

VERBS = {
    "freeze_user": lambda rpc, token, user_id: rpc.freeze_user(token, user_id, "test"),
    "unfreeze_user": lambda rpc, token, user_id: rpc.unfreeze_user(token, user_id, "test"),
    "close_user": lambda rpc, token, user_id: rpc.close_user(token, user_id, "test"),
    "audit_log": lambda rpc, token, user_id: rpc.audit_log(token, user_id),
}


@pytest.fixture(scope="module")
def users_rpc(shared_users):
    return shared_users


@pytest.fixture(scope="module")
def target(users_rpc, master, settings):
    """A signed-up trader the verbs act on (deleted from Keycloak after)."""
    result = users_rpc.sign_up(signup_request())
    yield result["user_id"]
    master.call("DELETE", f"/{settings['EXCHANGE_KEYCLOAK_REALM']}/users/{result['user_id']}")


def caller_token(principal_tokens, caller):
    return {"nobody": None, "garbage": "not-a-token",
            "trader": lambda: principal_tokens.person("trader"),
            "service account": principal_tokens.service_account}[caller]


@pytest.mark.parametrize("verb", list(VERBS))
@pytest.mark.parametrize("caller, code", [
    ("nobody", "TOKEN_MISSING"),
    ("garbage", "TOKEN_MALFORMED"),
    ("trader", "ROLE_REQUIRED"),
    ("service account", "PERSON_REQUIRED"),
])
def test_an_admin_verb_refuses_everyone_but_an_admin(
        users_rpc, principal_tokens, target, verb, caller, code):
    token = caller_token(principal_tokens, caller)
    token = token() if callable(token) else token
    before = users_rpc.get_account_state(target)
    with pytest.raises(UsersError) as raised:
        VERBS[verb](users_rpc, token, target)
    assert raised.value.code == code, raised.value
    assert users_rpc.get_account_state(target) == before


def test_an_admin_may_do_each_admin_verb(users_rpc, principal_tokens, target):
    admin = principal_tokens.person("admin")
    assert VERBS["freeze_user"](users_rpc, admin, target)["state"] == "frozen"
    assert VERBS["unfreeze_user"](users_rpc, admin, target)["state"] == "active"
    assert [e["action"] for e in VERBS["audit_log"](users_rpc, admin, target)][:2] == [
        "user_unfrozen", "user_frozen"]
    assert VERBS["close_user"](users_rpc, admin, target)["state"] == "closed"
