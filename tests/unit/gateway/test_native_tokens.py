"""The native API's credential and validation rules that need no server:
bearer tokens refused before any RPC (expired, wrong audience, a service
account, malformed headers) and validation failures naming their field."""
import time
from types import SimpleNamespace

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from pydantic import ValidationError

from gateway import tokens
from gateway.api.native import refuse_invalid
from gateway.errors import ApiError
from gateway.schemas import ApiKeyRequest, PlaceOrder, WithdrawalRequest
from services.common.tokens import TokenVerifier

ISSUER = "http://127.0.0.1:18080/realms/exchange"
AUDIENCE = "exchange-api"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class OneKey:
    """The realm's JWKS reduced to one known key (no Keycloak needed)."""

    def get_signing_key(self, kid):
        if kid != "realm-key":
            raise jwt.PyJWKClientError(f"no signing key matches key id {kid!r}")
        return SimpleNamespace(key=KEY.public_key())


@pytest.fixture
def app():
    app = Flask(__name__)
    verifier = TokenVerifier(ISSUER, AUDIENCE, jwks_url="http://127.0.0.1:9/unused")
    verifier.jwks = OneKey()
    app.extensions["token_verifier"] = verifier
    with app.app_context():
        yield app


def token(**claims) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "3f1c2b9e-5d4a-4c7b-9e2f-1a2b3c4d5e6f",
            "iat": now, "exp": now + 300, "preferred_username": "alice",
            "realm_access": {"roles": ["trader"]}, **claims}
    return jwt.encode(body, KEY, "RS256", headers={"kid": "realm-key"})


def refusal(call) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


# Claims as functions of the time the test runs, not of collection time: a
# suite runs for many minutes, and "600 s ahead" at collection was in the past
# by the time this ran in CI.
@pytest.mark.parametrize("claims, code", [
    (lambda now: {"exp": now - 60, "iat": now - 400}, "TOKEN_EXPIRED"),
    (lambda now: {"nbf": now + 600}, "TOKEN_NOT_YET_VALID"),
    (lambda now: {"aud": "another-api"}, "TOKEN_AUDIENCE"),
    (lambda now: {"iss": "http://127.0.0.1:18080/realms/master"}, "TOKEN_ISSUER"),
], ids=["expired", "not-yet-valid", "audience", "issuer"])
def test_a_token_that_does_not_verify_is_refused_with_its_reason(app, claims, code):
    refused = refusal(lambda: tokens.authenticate(token(**claims(int(time.time())))))
    assert (refused.status, refused.code) == (401, code)


def test_a_service_accounts_token_is_not_a_person(app):
    for claims in ({"preferred_username": "service-account-exchange-backend"},
                   {"client_id": "exchange-backend"}):
        refused = refusal(lambda: tokens.authenticate(token(**claims)))
        assert (refused.status, refused.code) == (403, "PERSON_REQUIRED")


@pytest.mark.parametrize("header", ["Basic YWxpY2U6cGFzcw==", "Bearer", "Bearer  ", "Token abc",
                                    "Bearer " + "a" * 9000, "Bearer tökén"])
def test_an_authorization_header_that_is_not_a_bearer_token_is_refused(header):
    refused = refusal(lambda: tokens.bearer_token(header))
    assert (refused.status, refused.code) == (401, "TOKEN_MALFORMED")


def test_the_bearer_token_is_taken_from_the_header():
    assert tokens.bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert tokens.bearer_token("bearer abc.def.ghi") == "abc.def.ghi"


@pytest.mark.parametrize("model, body, field, code", [
    (PlaceOrder, {"market": "BTC-USDT", "side": "buy", "price": 30000.5}, "price",
     "INVALID_NUMBER"),
    (PlaceOrder, {"market": "BTC-USDT", "side": "buy", "price": "3e4"}, "price",
     "INVALID_NUMBER"),
    (PlaceOrder, {"market": "BTC-USDT", "side": "buy", "quantity": "0"}, "quantity",
     "NOT_POSITIVE"),
    (PlaceOrder, {"market": "BTC-USDT", "side": "buy", "quantity": "１"}, "quantity",
     "INVALID_NUMBER"),
    (PlaceOrder, {"market": "BTC-USDT", "side": "buy", "client_order_id": "a\x00"},
     "client_order_id", "INVALID_TEXT"),
    (PlaceOrder, {"market": "BTC-USDT"}, "side", "MISSING_FIELD"),
    (PlaceOrder, {"market": "BTC-USDT", "side": "buy", "leverage": "10"}, "leverage",
     "UNKNOWN_FIELD"),
    (WithdrawalRequest, {"asset": "USDT", "address": "0xab", "amount": "1.5 ", "ref": "r"},
     "amount", "INVALID_NUMBER"),
    (ApiKeyRequest, {"label": "bot", "permissions": ["read", "admin"]}, "permissions.1",
     "INVALID_INPUT"),
    (ApiKeyRequest, {"label": "bot", "expires_at": 10 ** 15}, "expires_at", "INVALID_INPUT"),
])
def test_a_refused_body_names_its_field_and_the_grammars_code(model, body, field, code):
    with pytest.raises(ValidationError) as invalid:
        model.model_validate(body)
    refused = refusal(lambda: refuse_invalid(invalid.value))
    assert (refused.status, refused.field, refused.code) == (400, field, code)


def test_decimals_stay_the_strings_the_client_sent():
    order = PlaceOrder.model_validate({"market": "BTC-USDT", "side": "buy", "type": "limit",
                                       "price": "30000.10", "quantity": "0.0100"})
    assert (order.price, order.quantity) == ("30000.10", "0.0100")


@pytest.mark.parametrize("address", ["0x52908400098527886e0f7030069857d2e4169ee-", "bc1q xyz",
                                     "0x5290/8400"])
def test_a_withdrawal_address_with_characters_no_address_has_is_refused_in_words(address):
    """The refusal named the grammar's pattern ("address has characters that
    are not allowed ([A-Za-z0-9]{1,128})"), which the web client showed to
    the trader as it was: it must say the address is not one of the asset,
    with no pattern, and keep its code and field."""
    with pytest.raises(ValidationError) as invalid:
        WithdrawalRequest.model_validate({"asset": "USDT", "address": address, "amount": "10",
                                          "ref": "r"})
    refused = refusal(lambda: refuse_invalid(invalid.value))
    assert (refused.status, refused.field, refused.code) == (400, "address", "INVALID_TEXT")
    assert refused.message == ("address is not a valid USDT address: "
                               "an address has letters and digits only")


def test_an_address_of_the_right_characters_is_left_to_wallets_and_its_length_is_said():
    body = {"asset": "USDT", "amount": "10", "ref": "r"}
    assert WithdrawalRequest.model_validate(
        {**body, "address": "0x123"}).address == "0x123"   # wallets checks it for the chain
    for address, said in (("", "address must be 1 to 128 characters"),
                          ("a" * 129, "address must be 1 to 128 characters")):
        with pytest.raises(ValidationError) as invalid:
            WithdrawalRequest.model_validate({**body, "address": address})
        refused = refusal(lambda: refuse_invalid(invalid.value))
        assert (refused.field, refused.code, refused.message) == ("address", "INVALID_TEXT", said)
