"""Access tokens of the three kinds of caller, from the real Keycloak (realm
``exchange``): an admin (realm role ``admin``), a trader (role ``trader``)
and the backend client's service account. The two people are test users
created for the session and deleted after it.

``principal_tokens`` is a session fixture. A person's access token is
reused while it has more than a minute left (they live 300 s), as a real
client does: one password grant per call made hundreds of grants a run, and
one of them was answered "Invalid user credentials" in a loaded CI run."""
from __future__ import annotations

import time
import uuid

import pytest
import requests

from services.common.identity import backend_admin

PASSWORD = "correct-horse-battery-staple-9"   # test users only


class PrincipalTokens:
    def __init__(self, settings):
        self.settings = settings
        self.admin = backend_admin(settings)
        self.users: dict[str, tuple[str, str]] = {}   # role -> (username, user id)
        self.tokens: dict[str, tuple[str, float]] = {}  # role -> (token, monotonic expiry)

    def _token_url(self) -> str:
        return f"{self.settings.keycloak_issuer}/protocol/openid-connect/token"

    def person(self, role: str) -> str:
        """A fresh access token of the session's test user with ``role``."""
        if role not in self.users:
            username = f"it-{role}-{uuid.uuid4().hex[:8]}"
            user_id = self.admin.create_user({
                "username": username, "email": f"{username}@example.test", "enabled": True,
                "firstName": "Test", "lastName": role.title(), "emailVerified": True,
                "credentials": [{"type": "password", "value": PASSWORD, "temporary": False}]})
            self.admin.assign_realm_roles(user_id, [self.admin.get_realm_role(role)])
            self.users[role] = (username, user_id)
        cached = self.tokens.get(role)
        if cached and cached[1] - time.monotonic() > 60:
            return cached[0]
        asked = time.monotonic()
        response = requests.post(self._token_url(), timeout=30, data={
            "grant_type": "password", "scope": "openid",
            "client_id": self.settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_ID"],
            "client_secret": self.settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_SECRET"],
            "username": self.users[role][0], "password": PASSWORD})
        assert response.status_code == 200, response.text
        answer = response.json()
        self.tokens[role] = (answer["access_token"], asked + answer["expires_in"])
        return answer["access_token"]

    def username(self, role: str) -> str:
        self.person(role)
        return self.users[role][0]

    def service_account(self) -> str:
        """The backend client's client-credentials token (a machine)."""
        response = requests.post(self._token_url(), timeout=30, data={
            "grant_type": "client_credentials",
            "client_id": self.settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_ID"],
            "client_secret": self.settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_SECRET"]})
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def delete_all(self) -> None:
        for _, user_id in self.users.values():
            self.admin.delete_user(user_id)
        self.users.clear()
        self.tokens.clear()


@pytest.fixture(scope="session")
def principal_tokens(settings):
    tokens = PrincipalTokens(settings)
    yield tokens
    tokens.delete_all()
