"""The users service acts for people: a service account's token (the backend
client's client-credentials token) is refused where a person is expected
(issue 11: ``users.authenticate`` accepted it as if it were a user)."""
import pytest

from services.users.errors import UsersError
from tests.integration.identity_kit import principal_tokens  # noqa: F401 (fixture)


@pytest.mark.parametrize("verb", ["authenticate", "get_profile", "enable_two_factor",
                                  "authorize_withdrawal", "list_api_keys"])
def test_a_service_accounts_token_is_refused_where_a_person_is_expected(
        users_rpc, principal_tokens, verb):
    with pytest.raises(UsersError) as raised:
        getattr(users_rpc, verb)(principal_tokens.service_account())
    assert raised.value.code == "PERSON_REQUIRED"


def test_a_persons_token_is_still_accepted(users_rpc, principal_tokens):
    who = users_rpc.authenticate(principal_tokens.person("trader"))
    assert who["username"] == principal_tokens.username("trader")
    assert "trader" in who["roles"]
