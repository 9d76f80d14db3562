"""Account states through the service: role checks on admin RPCs, freeze and
unfreeze (``user_frozen`` for the orders service, ``check_can_trade``), and
closing an account (Keycloak user disabled, API keys revoked)."""
import uuid

import pytest

from services.users.errors import UsersError
from users_keycloak import PASSWORD, password_grant
from users_testkit import UsersEvents


@pytest.fixture(scope="module")
def users_rpc(shared_users):
    return shared_users


def code_of(call, *args):
    with pytest.raises(UsersError) as caught:
        call(*args)
    return caught.value.code


@pytest.fixture
def trader(users_rpc, sign_up, token_for):
    result, request = sign_up(users_rpc)
    return result["user_id"], token_for(request["username"]), request["username"]


def test_only_admins_change_account_states(users_rpc, trader, admin_token):
    user_id, token, _ = trader
    assert code_of(users_rpc.freeze_user, token, user_id, "me") == "ROLE_REQUIRED"
    assert code_of(users_rpc.close_user, token, user_id, "me") == "ROLE_REQUIRED"
    assert code_of(users_rpc.audit_log, token) == "ROLE_REQUIRED"
    assert code_of(users_rpc.freeze_user, "not-a-token", user_id, "x") == "TOKEN_MALFORMED"
    assert code_of(users_rpc.freeze_user, admin_token, str(uuid.uuid4()), "x") == \
        "USER_NOT_FOUND"
    assert users_rpc.authenticate(admin_token)["state"] is None   # operators have no profile


def test_a_frozen_user_cannot_trade_and_orders_hear_about_it(
        users_rpc, trader, admin_token, users_events, db):
    user_id, token, _ = trader
    assert users_rpc.check_can_trade(user_id) == {"user_id": user_id, "state": "active",
                                                  "can_trade": True}
    frozen = users_rpc.freeze_user(admin_token, user_id, "chargeback investigation")
    assert frozen["state"] == "frozen" and frozen["reason"] == "chargeback investigation"
    event = UsersEvents.wait_for("user_frozen", user_id=user_id)
    assert event["state"] == "frozen" and event["previous_state"] == "active"
    assert event["by"].startswith("admin:")

    assert code_of(users_rpc.check_can_trade, user_id) == "USER_FROZEN"
    assert code_of(users_rpc.check_can_withdraw, user_id) == "USER_FROZEN"
    assert code_of(users_rpc.authorize_withdrawal, token) == "USER_FROZEN"
    assert users_rpc.authenticate(token)["state"] == "frozen"        # may still sign in
    assert code_of(users_rpc.freeze_user, admin_token, user_id, "again") == \
        "ACCOUNT_STATE_CONFLICT"

    assert users_rpc.unfreeze_user(admin_token, user_id, "cleared")["state"] == "active"
    assert users_rpc.check_can_trade(user_id)["can_trade"] is True
    actions = [e["action"] for e in users_rpc.audit_log(admin_token, user_id)]
    assert [a for a in actions if a.startswith("user_")][:2] == ["user_unfrozen", "user_frozen"]
    assert "withdrawal_refused" in actions
    assert code_of(users_rpc.unfreeze_user, admin_token, user_id, "again") == \
        "ACCOUNT_STATE_CONFLICT"


def test_closing_disables_the_login_and_revokes_the_keys(
        users_rpc, trader, admin_token, kc_admin, settings, db):
    user_id, token, username = trader
    key = users_rpc.create_api_key(token, {"label": "bot", "permissions": ["trade"]})
    closed = users_rpc.close_user(admin_token, user_id, "customer request")
    assert closed["state"] == "closed"
    assert kc_admin.get_user(user_id)["enabled"] is False
    response = password_grant(settings, settings["EXCHANGE_KEYCLOAK_REALM"],
                              settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_ID"],
                              settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_SECRET"],
                              username, PASSWORD)
    assert response.status_code in (400, 401)
    # a token issued before closing is still unexpired, but refused
    assert code_of(users_rpc.authenticate, token) == "USER_CLOSED"
    assert code_of(users_rpc.check_can_trade, user_id) == "USER_CLOSED"
    row = db.execute("SELECT revoked_at IS NOT NULL, secret_ciphertext IS NULL "
                     "FROM users.api_keys WHERE key_id = %s", (key["key_id"],)).fetchone()
    assert row == (True, True)
    for action in ("freeze_user", "unfreeze_user", "close_user"):
        assert code_of(getattr(users_rpc, action), admin_token, user_id, "x") == \
            "ACCOUNT_STATE_CONFLICT"


def test_audit_log_is_append_only(db):
    with pytest.raises(Exception) as caught:
        db.execute("UPDATE users.audit_log SET action = 'nothing' WHERE id = 1")
    assert "append-only" in str(caught.value)
    with pytest.raises(Exception):
        db.execute("DELETE FROM users.audit_log")
