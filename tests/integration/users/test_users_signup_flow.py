"""Sign-up against the real Keycloak, PostgreSQL and wallets service: the
happy path, Keycloak's refusals, idempotent retries, compensation when the
wallets step fails, and recovery of sign-ups whose worker died."""
import uuid

import eventlet
import pytest
from nameko.standalone.rpc import ServiceRpcProxy

from services.users.errors import UsersError
from users_keycloak import PASSWORD
from users_testkit import RPC_TIMEOUT, UsersEvents, new_username, signup_request


def code_of(call, *args):
    with pytest.raises(UsersError) as caught:
        call(*args)
    return caught.value.code


def signup_row(db, signup_id):
    return db.execute("SELECT state, reached, user_id, last_error_code FROM users.signups "
                      "WHERE signup_id = %s", (signup_id,)).fetchone()


def profile_row(db, user_id):
    return db.execute("SELECT username, state FROM users.profiles WHERE user_id = %s",
                      (user_id,)).fetchone()


def test_sign_up_creates_identity_profile_and_wallets_then_the_token_verifies(
        users_rpc, sign_up, kc_admin, db, token_for, users_events, nameko_config):
    result, request = sign_up(users_rpc)
    user_id = result["user_id"]
    UsersEvents.wait_for("user_signed_up", user_id=user_id)
    assert result["state"] == "completed" and result["username"] == request["username"]

    kc_user = kc_admin.get_user(user_id)
    assert kc_user["enabled"] is True and kc_user["email"] == request["email"]
    assert "trader" in {r["name"] for r in kc_admin.get_realm_roles_of_user(user_id)}
    assert profile_row(db, user_id) == (request["username"], "active")
    assert signup_row(db, result["signup_id"])[:3] == ("completed", "completed",
                                                         uuid.UUID(user_id))
    with ServiceRpcProxy("wallets", nameko_config, timeout=RPC_TIMEOUT) as wallets:
        balances = wallets.balances(user_id)["balances"]
    assert balances and all(b["available"].strip("0.") == "" for b in balances.values())
    assert len(UsersEvents.find("user_signed_up", user_id=user_id,
                                username=request["username"],
                                signup_id=result["signup_id"])) == 1
    assert db.execute("SELECT count(*) FROM users.audit_log WHERE user_id = %s "
                      "AND action = 'signup_completed'", (user_id,)).fetchone()[0] == 1

    principal = users_rpc.authenticate(token_for(request["username"]))
    assert principal["user_id"] == user_id
    assert principal["username"] == request["username"]
    assert "trader" in principal["roles"] and "admin" not in principal["roles"]
    assert principal["state"] == "active" and principal["strong_auth"] is False


@pytest.mark.parametrize("field,value,code", [
    ("password", "short-pw", "WEAK_PASSWORD"),
    ("password", "{username}", "WEAK_PASSWORD"),
    ("password", "{email}", "WEAK_PASSWORD"),
    ("username", "not valid!", "INVALID_REQUEST"),
])
def test_refused_sign_ups_leave_nothing(users_rpc, kc_admin, db, kc_cleanup, settings,
                                        field, value, code):
    request = signup_request()
    kc_cleanup.append((settings["EXCHANGE_KEYCLOAK_REALM"], f"username:{request['username']}"))
    request[field] = value.format(**request)
    with pytest.raises(UsersError) as caught:
        users_rpc.sign_up(request)
    assert caught.value.code == code
    assert request["password"] not in caught.value.message
    assert kc_admin.get_users({"username": request["username"], "exact": True}) == []
    assert db.execute("SELECT count(*) FROM users.profiles WHERE username = %s",
                      (request["username"],)).fetchone()[0] == 0


def test_duplicate_username_and_email_are_refused_by_keycloak(users_rpc, sign_up, db):
    first, request = sign_up(users_rpc)
    same_name = signup_request(username=request["username"],
                               email=f"other-{request['email']}")
    assert code_of(users_rpc.sign_up, same_name) == "USERNAME_TAKEN"
    same_email = signup_request(email=request["email"])
    assert code_of(users_rpc.sign_up, same_email) == "EMAIL_TAKEN"
    assert db.execute("SELECT count(*) FROM users.signups WHERE username = %s AND state = "
                      "'rejected' AND last_error_code = 'USERNAME_TAKEN'",
                      (request["username"],)).fetchone()[0] == 1


def test_concurrent_sign_ups_for_one_username_create_one_user(
        start_users, sign_up, kc_admin):
    config = start_users()
    username = new_username()
    outcomes = []

    def attempt(n):
        with ServiceRpcProxy("users", config, timeout=RPC_TIMEOUT) as users:
            try:
                outcomes.append(sign_up(users, username=username,
                                        email=f"{username}-{n}@example.test")[0]["state"])
            except UsersError as exc:
                outcomes.append(exc.code)
    threads = [eventlet.spawn(attempt, n) for n in range(3)]
    for thread in threads:
        thread.wait()
    assert sorted(outcomes) == ["USERNAME_TAKEN", "USERNAME_TAKEN", "completed"]
    assert len(kc_admin.get_users({"username": username, "exact": True})) == 1


def test_retry_with_the_same_signup_id_returns_the_first_outcome(users_rpc, sign_up):
    signup_id = str(uuid.uuid4())
    first, request = sign_up(users_rpc, signup_id=signup_id)
    again = users_rpc.sign_up(request)
    assert again["user_id"] == first["user_id"] and again["state"] == "completed"
    weak = signup_request(password="weak", signup_id=str(uuid.uuid4()))
    assert code_of(users_rpc.sign_up, weak) == "WEAK_PASSWORD"
    assert code_of(users_rpc.sign_up, {**weak, "password": PASSWORD}) == "WEAK_PASSWORD"
    assert users_rpc.get_signup(weak["signup_id"])["state"] == "rejected"


def test_wallets_down_rolls_the_whole_sign_up_back(
        start_users, kc_admin, db, kc_cleanup, settings, users_events):
    # the wallets step calls a service that is not running: the real
    # UnknownService path, as when wallets is down
    config = start_users(wallets=False, USERS_WALLETS_SERVICE=f"wallets_down_{uuid.uuid4().hex[:6]}")
    request = signup_request()
    kc_cleanup.append((settings["EXCHANGE_KEYCLOAK_REALM"], f"username:{request['username']}"))
    with ServiceRpcProxy("users", config, timeout=RPC_TIMEOUT) as users:
        with pytest.raises(UsersError) as caught:
            users.sign_up(request)
        assert caught.value.code == "SIGNUP_FAILED"
        assert "WALLETS_UNAVAILABLE" in caught.value.message
        signup = db.execute("SELECT signup_id, state, reached, user_id, last_error_code "
                            "FROM users.signups WHERE username = %s",
                            (request["username"],)).fetchone()
        assert signup[1:3] == ("rolled_back", "profile_created")
        assert signup[4] == "WALLETS_UNAVAILABLE"
        user_id = str(signup[3])
        assert kc_admin.get_users({"username": request["username"], "exact": True}) == []
        assert profile_row(db, user_id) is None
        UsersEvents.wait_for("signup_rolled_back", user_id=user_id, signup_id=str(signup[0]))
        assert users.get_signup(str(signup[0]))["last_error_code"] == "WALLETS_UNAVAILABLE"
    # the username is free again once wallets is back
    start_users.stop_all()
    config = start_users(wallets=True)
    with ServiceRpcProxy("users", config, timeout=RPC_TIMEOUT) as users:
        assert users.sign_up(request)["state"] == "completed"


# ---------------------------------------------------------------- recovery

def crashed_signup(db, kc_admin, state, *, with_identity=True, with_profile=False):
    """What a worker that died after reaching ``state`` leaves behind: a
    disabled Keycloak user (maybe), a profile (maybe), an expired lease."""
    request = signup_request()
    signup_id = str(uuid.uuid4())
    db.execute("INSERT INTO users.signups (signup_id, username, email, state, reached, "
               "lease_until, created_at) VALUES (%s, %s, %s, 'pending', 'pending', "
               "now() + interval '1 hour', now() - interval '10 seconds')",
               (signup_id, request["username"], request["email"]))
    user_id = None
    if with_identity:
        user_id = kc_admin.create_user({
            "username": request["username"], "email": request["email"], "enabled": False,
            "firstName": "Test", "lastName": "User",
            "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}]})
        kc_admin.assign_realm_roles(user_id, [kc_admin.get_realm_role("trader")])
    if with_profile:
        db.execute("INSERT INTO users.profiles (user_id, username, email, signup_id) "
                   "VALUES (%s, %s, %s, %s)", (user_id, request["username"], request["email"],
                                               signup_id))
    db.execute("UPDATE users.signups SET state = %s, reached = %s, user_id = %s, "
               "lease_until = now() - interval '1 second' WHERE signup_id = %s",
               (state, state, user_id if state != "pending" else None, signup_id))
    return signup_id, user_id, request


@pytest.mark.parametrize("state,with_profile", [("identity_created", False),
                                                ("role_granted", False),
                                                ("profile_created", True)])
def test_recovery_undoes_a_sign_up_that_died_before_the_wallets(
        users_rpc, kc_admin, db, kc_cleanup, settings, state, with_profile):
    signup_id, user_id, request = crashed_signup(db, kc_admin, state, with_profile=with_profile)
    kc_cleanup.append((settings["EXCHANGE_KEYCLOAK_REALM"], user_id))
    assert users_rpc.recover_signups([signup_id])[signup_id] == "rolled_back"
    assert signup_row(db, signup_id)[:2] == ("rolled_back", state)
    assert kc_admin.get_users({"username": request["username"], "exact": True}) == []
    assert profile_row(db, user_id) is None


def test_recovery_finds_the_keycloak_user_a_crash_did_not_record(
        users_rpc, kc_admin, db, kc_cleanup, settings):
    signup_id, user_id, request = crashed_signup(db, kc_admin, "pending")
    kc_cleanup.append((settings["EXCHANGE_KEYCLOAK_REALM"], user_id))
    assert signup_row(db, signup_id)[2] is None     # the id never reached the database
    assert users_rpc.recover_signups([signup_id])[signup_id] == "rolled_back"
    assert kc_admin.get_users({"username": request["username"], "exact": True}) == []


def test_recovery_leaves_an_enabled_user_of_the_same_name_alone(
        users_rpc, kc_admin, db, kc_cleanup, settings):
    signup_id, user_id, request = crashed_signup(db, kc_admin, "pending")
    kc_cleanup.append((settings["EXCHANGE_KEYCLOAK_REALM"], user_id))
    kc_admin.enable_user(user_id)      # not ours: ours would still be disabled
    assert users_rpc.recover_signups([signup_id])[signup_id] == "rolled_back"
    assert kc_admin.get_user(user_id)["enabled"] is True


def test_recovery_completes_a_sign_up_that_died_after_the_wallets(
        users_rpc, kc_admin, db, kc_cleanup, settings, token_for):
    signup_id, user_id, request = crashed_signup(db, kc_admin, "wallets_opened",
                                                 with_profile=True)
    kc_cleanup.append((settings["EXCHANGE_KEYCLOAK_REALM"], user_id))
    assert users_rpc.recover_signups([signup_id])[signup_id] == "completed"
    assert kc_admin.get_user(user_id)["enabled"] is True
    assert users_rpc.authenticate(token_for(request["username"]))["user_id"] == user_id


def test_a_retry_of_a_crashed_sign_up_recovers_it_first(users_rpc, kc_admin, db, kc_cleanup,
                                                         settings):
    signup_id, user_id, request = crashed_signup(db, kc_admin, "identity_created")
    kc_cleanup.append((settings["EXCHANGE_KEYCLOAK_REALM"], user_id))
    assert code_of(users_rpc.sign_up, {**request, "signup_id": signup_id}) == "SIGNUP_FAILED"
    assert kc_admin.get_users({"username": request["username"], "exact": True}) == []


def test_a_live_sign_up_is_not_taken_over(users_rpc, db):
    request = signup_request()
    signup_id = str(uuid.uuid4())
    db.execute("INSERT INTO users.signups (signup_id, username, email, state, reached, "
               "lease_until) VALUES (%s, %s, %s, 'identity_created', 'identity_created', "
               "now() + interval '1 minute')", (signup_id, request["username"], request["email"]))
    assert users_rpc.recover_signups([signup_id]) == {}
    assert code_of(users_rpc.sign_up, {**request, "signup_id": signup_id}) == \
        "SIGNUP_IN_PROGRESS"
    assert code_of(users_rpc.sign_up, signup_request(username=request["username"])) == \
        "USERNAME_TAKEN"
    db.execute("UPDATE users.signups SET state = 'rolled_back' WHERE signup_id = %s",
               (signup_id,))
