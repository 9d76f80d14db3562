"""Input validation of the RPC API."""
import pytest

from services.users.errors import UsersError
from services.users.schemas import CreateApiKeyRequest, SignUpRequest, load

GOOD = {"username": "Alice.Trader", "email": "Alice@Example.test",
        "password": "correct-horse-battery-1", "first_name": "Alice", "last_name": "T"}


def test_username_and_email_are_lower_cased():
    request = load(SignUpRequest, GOOD)
    assert request.username == "alice.trader" and request.email == "alice@example.test"


@pytest.mark.parametrize("field,value", [("username", "a b"), ("username", "ab"),
                                         ("email", "nope"), ("password", ""),
                                         ("first_name", "")])
def test_invalid_fields_are_named_and_the_password_is_not_echoed(field, value):
    with pytest.raises(UsersError) as caught:
        load(SignUpRequest, {**GOOD, field: value})
    assert caught.value.code == "INVALID_REQUEST"
    assert field in caught.value.message
    assert GOOD["password"] not in caught.value.message


def test_unknown_fields_are_refused():
    with pytest.raises(UsersError):
        load(SignUpRequest, {**GOOD, "roles": ["admin"]})


def test_api_key_request_defaults_to_read():
    assert load(CreateApiKeyRequest, {"label": "bot"}).permissions == ["read"]


@pytest.mark.parametrize("field, value", [
    ("password", "correct-horse\x00battery-1"),   # accepted before issue 11
    ("password", "correct-horse\nbattery-1"),
    ("first_name", "Al\x00ice"),
    ("username", "alice\x00"),
    ("last_name", "T\ud800"),
])
def test_control_characters_are_refused_in_every_text_field(field, value):
    with pytest.raises(UsersError) as caught:
        load(SignUpRequest, {**GOOD, field: value})
    assert caught.value.code == "INVALID_REQUEST"
    assert field in caught.value.message
    assert "battery" not in caught.value.message


@pytest.mark.parametrize("request_", [
    {"label": "bot\x00"},                 # reached PostgreSQL as DataError before
    {"label": "x" * 10_000},
    {"label": "bot", "expires_at": 10 ** 30},  # OverflowError before
    {"label": "bot", "expires_at": "1700000000000"},
    {"label": "bot", "expires_at": 1.5e12},
    {"label": "bot", "expires_at": 0},
])
def test_api_key_requests_with_hostile_values_are_refused(request_):
    with pytest.raises(UsersError) as caught:
        load(CreateApiKeyRequest, request_)
    assert caught.value.code == "INVALID_REQUEST"
