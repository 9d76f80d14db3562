"""Schemathesis against the running gateway's /api/v1/openapi.json: every
operation, a bounded number of generated requests each (valid and invalid
ones), authenticated as a fresh funded trader with a Keycloak access token.

Asserted on every response: no 5xx, the status is one the document lists,
the content type and the body match the document, and a request that
violates the document is refused (4xx).

It sends about 4,000 weight a minute here, more on a faster machine: from a
loopback address of its own, waiting out a 429 as a partner's bot would, so
it never spends 127.0.0.1's weight for the tests after it (tests/e2e/loopback.py)."""
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               response_schema_conformance,
                                               status_code_conformance)

from tests.e2e.gateway.native_testkit import new_person, password_token
from tests.e2e.loopback import PoliteSession, own_address

EXAMPLES_PER_OPERATION = 25
TOKEN_REFRESH_S = 120   # access tokens live 300 s; a long run gets a fresh one
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, negative_data_rejection]


@pytest.fixture(scope="module")
def api_schema(settings):
    return schemathesis.openapi.from_url(f"{settings.gateway_url}/api/v1/openapi.json",
                                         timeout=30)


class FreshToken:
    """A funded trader's bearer header, renewed before the token expires."""

    def __init__(self, settings):
        self.settings = settings
        self.person = new_person(settings, funds={"USDT": "5000", "BTC": "0.2", "ETH": "2"},
                                 prefix="fuzz")
        self.fetched = time.monotonic()

    @property
    def headers(self) -> dict:
        if time.monotonic() - self.fetched > TOKEN_REFRESH_S:
            self.person.token = password_token(self.settings, self.person.username)
            self.fetched = time.monotonic()
        return self.person.headers


@pytest.fixture(scope="module")
def fuzz_caller(settings):
    return FreshToken(settings)


@pytest.fixture(scope="module")
def fuzz_session():
    with PoliteSession(own_address()) as session:
        yield session


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hypothesis_settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None,
                     suppress_health_check=list(HealthCheck), derandomize=True,
                     database=None)
def test_every_operation_answers_as_documented(case, settings, fuzz_caller, fuzz_session):
    case.call_and_validate(base_url=settings.gateway_url, session=fuzz_session,
                           headers=fuzz_caller.headers, checks=CHECKS, timeout=30)
