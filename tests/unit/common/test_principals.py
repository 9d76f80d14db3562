"""Who may do an admin verb (services.common.principals.admin_of)."""
import pytest

from services.common.errors import Forbidden
from services.common.principals import admin_of, is_service_account
from services.common.tokens import Principal


def principal(username, roles, **claims):
    return Principal("sub-1", username, frozenset(roles),
                     {"preferred_username": username, **claims})


def test_a_person_with_the_admin_role_is_an_admin():
    admin = principal("ops", {"admin"})
    assert admin_of(admin) is admin


@pytest.mark.parametrize("who, code", [
    (principal("alice", {"trader"}), "ADMIN_REQUIRED"),
    (principal("alice", set()), "ADMIN_REQUIRED"),
    (principal("service-account-exchange-backend", {"admin"}), "PERSON_REQUIRED"),
    (principal("robot", {"admin"}, client_id="exchange-backend"), "PERSON_REQUIRED"),
])
def test_everyone_else_is_refused_with_a_code(who, code):
    with pytest.raises(Forbidden) as raised:
        admin_of(who)
    assert raised.value.code == code


def test_service_accounts_are_recognised():
    assert is_service_account({"preferred_username": "service-account-x"})
    assert not is_service_account({"preferred_username": "alice"})
