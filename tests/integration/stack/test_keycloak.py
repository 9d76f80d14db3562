"""Keycloak: a user of the imported realm gets a token that verifies against
the realm's JWKS; tampered tokens do not."""
import base64
import json
import uuid

import pytest

from services.common.identity import backend_admin, backend_openid
from services.common.tokens import InvalidToken, TokenVerifier

PASSWORD = "correct-horse-battery-staple-1"


@pytest.fixture(scope="module")
def trader(settings):
    admin = backend_admin(settings)
    username = f"stacktest-{uuid.uuid4().hex[:8]}"
    user_id = admin.create_user({"username": username, "email": f"{username}@example.test",
                                 "enabled": True, "emailVerified": True,
                                 "firstName": "Stack", "lastName": "Test",
                                 "credentials": [{"type": "password", "value": PASSWORD,
                                                  "temporary": False}]})
    admin.assign_realm_roles(user_id, [admin.get_realm_role("trader")])
    yield username, user_id
    admin.delete_user(user_id)


@pytest.fixture(scope="module")
def access_token(settings, trader):
    return backend_openid(settings).token(trader[0], PASSWORD)["access_token"]


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_token_of_a_realm_user_verifies_against_the_jwks(settings, trader, access_token):
    principal = TokenVerifier.from_settings(settings).verify(access_token)
    assert principal.subject == trader[1]
    assert principal.username == trader[0]
    assert principal.has_role("trader")
    assert not principal.has_role("admin")
    assert settings["EXCHANGE_KEYCLOAK_AUDIENCE"] in principal.claims["aud"]


def test_tampered_payload_is_rejected(settings, access_token):
    header, payload, signature = access_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["realm_access"] = {"roles": ["admin"]}
    forged = ".".join([header, _b64(claims), signature])
    with pytest.raises(InvalidToken) as error:
        TokenVerifier.from_settings(settings).verify(forged)
    assert error.value.code == "TOKEN_SIGNATURE"


def test_unsigned_token_is_rejected(settings, access_token):
    payload = access_token.split(".")[1]
    unsigned = ".".join([_b64({"alg": "none", "typ": "JWT"}), payload, ""])
    with pytest.raises(InvalidToken) as error:
        TokenVerifier.from_settings(settings).verify(unsigned)
    assert error.value.code == "TOKEN_ALGORITHM"


def test_token_for_another_audience_is_rejected(settings, access_token):
    verifier = TokenVerifier(settings.keycloak_issuer, "some-other-api")
    with pytest.raises(InvalidToken) as error:
        verifier.verify(access_token)
    assert error.value.code == "TOKEN_AUDIENCE"


def test_unknown_key_ids_refetch_the_jwks_at_most_once_per_interval(settings, access_token):
    verifier = TokenVerifier.from_settings(settings)
    verifier.verify(access_token)
    fetches = []
    original = verifier.jwks.fetch_data
    verifier.jwks.fetch_data = lambda: fetches.append(1) or original()
    header, payload, signature = access_token.split(".")
    for n in range(5):
        forged_header = _b64({"alg": "RS256", "typ": "JWT", "kid": f"made-up-{n}"})
        with pytest.raises(InvalidToken) as error:
            verifier.verify(".".join([forged_header, payload, signature]))
        assert error.value.code == "TOKEN_UNKNOWN_KEY"
    assert len(fetches) == 1
    verifier.verify(access_token)  # the real key is still cached
