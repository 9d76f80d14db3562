"""Roles and the second-factor check on verified claims."""
import pytest

from services.users.authz import require_role, require_strong_auth
from services.users.errors import UsersError

NOW_S = 1_800_000_000


def claims(amr=("pwd", "otp"), auth_time=NOW_S - 60, roles=("trader",)):
    out = {"sub": "u-1", "realm_access": {"roles": list(roles)}, "amr": list(amr) if amr else amr}
    if auth_time is not None:
        out["auth_time"] = auth_time
    return out


def code(fn, *args, **kwargs):
    with pytest.raises(UsersError) as caught:
        fn(*args, **kwargs)
    return caught.value.code


def test_role_present_passes_and_missing_role_is_refused():
    require_role(claims(), "trader")
    assert code(require_role, claims(), "admin") == "ROLE_REQUIRED"
    assert code(require_role, {"sub": "x"}, "trader") == "ROLE_REQUIRED"


def test_session_that_passed_otp_is_strong():
    require_strong_auth(claims(), NOW_S, max_age_s=900)


@pytest.mark.parametrize("amr", [("pwd",), (), None, "pwd"])
def test_session_without_otp_is_refused(amr):
    assert code(require_strong_auth, claims(amr=amr), NOW_S) == "STRONG_AUTH_REQUIRED"


def test_acr_alone_does_not_count():
    token = claims(amr=("pwd",))
    token["acr"] = "2"
    assert code(require_strong_auth, token, NOW_S) == "STRONG_AUTH_REQUIRED"


def test_old_login_must_step_up():
    assert code(require_strong_auth, claims(auth_time=NOW_S - 901), NOW_S, max_age_s=900) == \
        "STRONG_AUTH_STALE"
    require_strong_auth(claims(auth_time=NOW_S - 900), NOW_S, max_age_s=900)


def test_without_auth_time_freshness_cannot_be_shown():
    assert code(require_strong_auth, claims(auth_time=None), NOW_S, max_age_s=900) == \
        "STRONG_AUTH_STALE"
    require_strong_auth(claims(auth_time=None), NOW_S, max_age_s=None)
