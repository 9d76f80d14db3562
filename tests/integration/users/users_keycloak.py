"""Test helpers that talk to the real Keycloak: the master admin's REST API,
password grants, the browser login (authorization code + PKCE, scraping
Keycloak's own login pages) and RFC 6238 TOTP codes."""
from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import struct
import time
from urllib.parse import parse_qs, urlparse

import requests

PASSWORD = "correct-horse-battery-staple-9"


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def totp(secret: str, at: float | None = None, period: int = 30, digits: int = 6,
         counter: int | None = None) -> str:
    """RFC 6238 with HMAC-SHA1; Keycloak keys the HMAC with the secret's UTF-8 bytes."""
    if counter is None:
        counter = int((time.time() if at is None else at) // period)
    mac = hmac.new(secret.encode(), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF) % 10 ** digits
    return str(code).zfill(digits)


class OtpDevice:
    """An authenticator app: never offers Keycloak the same code twice (the
    realm refuses reused codes), using the +-1 step the realm's look-around allows."""

    def __init__(self, secret: str, period: int = 30):
        self.secret = secret
        self.period = period
        self.used: set[int] = set()

    def use(self, counter: int) -> str:
        self.used.add(counter)
        return totp(self.secret, counter=counter)

    def code(self) -> str:
        now = int(time.time() // self.period)
        for counter in (now, now + 1, now - 1):
            if counter not in self.used:
                return self.use(counter)
        raise AssertionError("all codes of the look-around window are used")


class MasterAdmin:
    """The Admin REST API as the master realm's admin (test set-up only)."""

    def __init__(self, settings):
        self.base = settings.keycloak_url
        self.credentials = {"grant_type": "password", "client_id": "admin-cli",
                            "username": settings["EXCHANGE_KEYCLOAK_ADMIN"],
                            "password": settings["EXCHANGE_KEYCLOAK_ADMIN_PASSWORD"]}
        self.token, self.expires = None, 0.0

    @property
    def headers(self) -> dict:
        # the master realm's tokens live 60 s: fetch a new one when needed
        if time.monotonic() > self.expires:
            response = requests.post(f"{self.base}/realms/master/protocol/openid-connect/token",
                                     data=self.credentials, timeout=30)
            response.raise_for_status()
            body = response.json()
            self.token = body["access_token"]
            self.expires = time.monotonic() + body["expires_in"] - 15
        return {"Authorization": f"Bearer {self.token}"}

    def call(self, method: str, path: str, **kwargs):
        response = requests.request(method, f"{self.base}/admin/realms{path}",
                                    headers=self.headers, timeout=60, **kwargs)
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path}: {response.status_code} {response.text}")
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response

    def created_id(self, response) -> str:
        return response.headers["Location"].rstrip("/").rsplit("/", 1)[1]


def password_grant(settings, realm: str, client_id: str, client_secret: str | None,
                   username: str, password: str, otp: str | None = None,
                   base_url: str | None = None) -> requests.Response:
    data = {"grant_type": "password", "client_id": client_id, "username": username,
            "password": password, "scope": "openid"}
    if client_secret:
        data["client_secret"] = client_secret
    if otp:
        data["totp"] = otp
    return requests.post(
        f"{base_url or settings.keycloak_url}/realms/{realm}/protocol/openid-connect/token",
        data=data, timeout=30)


class BrowserLogin:
    """Keycloak's login pages driven like a browser: authorization code with
    PKCE (S256) for the public web client."""

    def __init__(self, settings, realm: str):
        self.base = settings.keycloak_url
        self.realm = realm
        self.client_id = settings["EXCHANGE_KEYCLOAK_WEB_CLIENT_ID"]
        self.redirect_uri = f"http://127.0.0.1:{settings['EXCHANGE_FRONTEND_PORT']}/callback"
        self.session = requests.Session()
        self.verifier = secrets.token_urlsafe(48)
        self.state = secrets.token_urlsafe(8)

    def _cookies_over_http(self):
        # Keycloak marks its cookies Secure even on http://127.0.0.1 (browsers
        # treat loopback as a secure context); requests would not send them.
        for cookie in self.session.cookies:
            cookie.secure = False

    def _follow(self, response):
        while response.status_code in (302, 303) and response.headers["Location"].startswith(
                self.base):
            self._cookies_over_http()
            response = self.session.get(response.headers["Location"], allow_redirects=False,
                                        timeout=30)
        return response

    def _submit(self, page, data):
        self._cookies_over_http()
        action = re.search(r'<form[^>]*\baction="([^"]+)"', page.text)
        assert action, f"no form on the page: {page.text[:500]}"
        return self._follow(self.session.post(html.unescape(action.group(1)), data=data,
                                              allow_redirects=False, timeout=30))

    @staticmethod
    def form_id(page) -> str | None:
        found = re.search(r'<form[^>]*\bid="([^"]+)"', page.text)
        return found.group(1) if found else None

    def start(self, extra: dict | None = None):
        challenge = b64url(hashlib.sha256(self.verifier.encode()).digest())
        params = {"client_id": self.client_id, "response_type": "code", "scope": "openid",
                  "redirect_uri": self.redirect_uri, "state": self.state,
                  "code_challenge": challenge, "code_challenge_method": "S256", **(extra or {})}
        return self.session.get(f"{self.base}/realms/{self.realm}/protocol/openid-connect/auth",
                                params=params, allow_redirects=False, timeout=30)

    def password(self, page, username: str, password: str):
        assert self.form_id(page) == "kc-form-login", page.text[:500]
        return self._submit(page, {"username": username, "password": password,
                                   "credentialId": ""})

    def otp(self, page, code: str):
        assert self.form_id(page) == "kc-otp-login-form", page.text[:500]
        return self._submit(page, {"otp": code})

    def configure_totp(self, page) -> tuple[OtpDevice, object]:
        """Answer the CONFIGURE_TOTP required action like a user with an
        authenticator app: the app (holding the secret Keycloak generated, a
        field of its form) and the next response."""
        assert self.form_id(page) == "kc-totp-settings-form", page.text[:500]
        secret = html.unescape(re.search(r'name="totpSecret" value="([^"]+)"', page.text).group(1))
        device = OtpDevice(secret)
        return device, self._submit(page, {"totp": device.code(), "totpSecret": secret,
                                           "userLabel": "test phone"})

    def tokens(self, response) -> dict:
        """Exchange the code of the final redirect (to the web client) for tokens."""
        assert response.status_code in (302, 303), response.text[:500]
        query = parse_qs(urlparse(response.headers["Location"]).query)
        assert query.get("state") == [self.state]
        reply = requests.post(
            f"{self.base}/realms/{self.realm}/protocol/openid-connect/token",
            data={"grant_type": "authorization_code", "client_id": self.client_id,
                  "code": query["code"][0], "redirect_uri": self.redirect_uri,
                  "code_verifier": self.verifier}, timeout=30)
        assert reply.status_code == 200, reply.text
        return reply.json()
