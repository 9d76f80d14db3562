"""Dependency providers of the users service: all of its I/O lives here.

* ``UsersStore``   PostgreSQL (schema ``users``): verbs inside one transaction.
* ``Identity``     Keycloak Admin REST API as the backend client's service account.
* ``Tokens``       local verification of access tokens against the realm's JWKS.
* ``WalletAccounts`` the wallets service's ``open_accounts`` over RPC, with a timeout.
* ``ApiKeyVault``  the keyring that encrypts API-key secrets.
* ``UsersConfig``  the service's settings.

Container config keys honoured (tests point the service elsewhere with them):
``POSTGRES_DB``, ``KEYCLOAK_REALM``, ``USERS_WALLETS_SERVICE`` and any
``EXCHANGE_USERS_*`` setting.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator

import eventlet
import psycopg
import requests
from keycloak.exceptions import KeycloakConnectionError, KeycloakError
from nameko.exceptions import RemoteError, UnknownService
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy
from psycopg.types.json import Jsonb

from services.common import events
from services.common.config import Settings, load_settings
from services.common.deadlines import Budget
from services.common.identity import backend_admin
from services.common.outbox import enqueue_event
from services.common.postgres import make_pool
from services.common.tokens import InvalidToken, TokenVerifier
from services.users.accounts import Account, AccountState
from services.users.apikeys import KeyRecord
from services.users.errors import UsersError, error
from services.users.schemas import is_uuid
from services.users.secretbox import KeyringError, Sealed, SecretBox
from services.users.signup import Signup, SignupState

log = logging.getLogger(__name__)

SERVICE = "users"
OUTBOX_STREAM = "users"

# LOCAL-DEV DEFAULT ONLY. Production sets EXCHANGE_USERS_APIKEY_KEYRING (see
# docs/users.md); a service started with this keyring logs a warning.
LOCAL_DEV_APIKEY_KEYRING = "dev1:bG9jYWwtZGV2LW9ubHktYXBpLWtleS1rZXlyaW5nISE="


def service_settings(container_config: dict) -> Settings:
    """Settings from the environment, then the container's overrides."""
    settings = load_settings()
    overrides = {k: str(v) for k, v in container_config.items() if k.startswith("EXCHANGE_USERS_")}
    if container_config.get("KEYCLOAK_REALM"):
        overrides["EXCHANGE_KEYCLOAK_REALM"] = container_config["KEYCLOAK_REALM"]
    return settings.with_overrides(**overrides) if overrides else settings


def ms(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def from_ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, tz=timezone.utc)


# ---------------------------------------------------------------- settings

@dataclass(frozen=True)
class Config:
    step_up_max_age_s: int | None     # None: the amr claim alone decides
    wallets_timeout_s: float
    signup_lease_s: int
    keycloak_realm: str


class UsersConfig(DependencyProvider):
    def setup(self):
        settings = service_settings(self.container.config)
        max_age = int(settings.get("EXCHANGE_USERS_STEP_UP_MAX_AGE_S", "900"))
        self.config = Config(
            step_up_max_age_s=max_age if max_age > 0 else None,
            wallets_timeout_s=float(settings.get("EXCHANGE_USERS_WALLETS_TIMEOUT_S", "10")),
            signup_lease_s=int(settings.get("EXCHANGE_USERS_SIGNUP_LEASE_S", "120")),
            keycloak_realm=settings["EXCHANGE_KEYCLOAK_REALM"])

    def get_dependency(self, worker_ctx):
        return self.config


# ---------------------------------------------------------------- PostgreSQL

_SIGNUP_COLUMNS = ("signup_id, username, email, state, reached, user_id, "
                   "(extract(epoch FROM created_at) * 1000)::bigint, last_error_code, last_error, "
                   "lease_until < now()")


@dataclass(frozen=True)
class SignupRow:
    signup: Signup
    last_error_code: str | None
    last_error: str | None
    lease_expired: bool


def _signup_row(row) -> SignupRow:
    (signup_id, username, email, state, reached, user_id, created_ms, code, message,
     expired) = row
    signup = Signup(str(signup_id), username, email, SignupState(state),
                    str(user_id) if user_id else None, SignupState(reached), int(created_ms))
    return SignupRow(signup, code, message, bool(expired))


def _inet(client_ip) -> str | None:
    try:
        return str(ipaddress.ip_address(str(client_ip).strip())) if client_ip else None
    except ValueError:
        return None


class StoreTx:
    """The verbs, on one connection inside one transaction."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn

    # -- sign-up saga ---------------------------------------------------------

    def insert_signup(self, signup_id: str, username: str, email: str, lease_s: int) -> bool:
        """False when the id exists already. USERNAME_TAKEN / EMAIL_TAKEN when
        another sign-up for the same name or address is in flight."""
        try:
            with self.conn.transaction():
                row = self.conn.execute(
                    "INSERT INTO users.signups (signup_id, username, email, state, reached, "
                    "lease_until) VALUES (%s, %s, %s, 'pending', 'pending', "
                    "now() + make_interval(secs => %s)) ON CONFLICT (signup_id) DO NOTHING "
                    "RETURNING 1", (signup_id, username, email, lease_s)).fetchone()
        except psycopg.errors.UniqueViolation as exc:
            constraint = exc.diag.constraint_name or ""
            if "email" in constraint:
                raise error("EMAIL_TAKEN", "a sign-up with this e-mail is in progress") from None
            raise error("USERNAME_TAKEN", "a sign-up with this username is in progress") from None
        return row is not None

    def get_signup(self, signup_id: str, for_update: bool = False) -> SignupRow | None:
        row = self.conn.execute(
            f"SELECT {_SIGNUP_COLUMNS} FROM users.signups WHERE signup_id = %s"
            + (" FOR UPDATE" if for_update else ""), (signup_id,)).fetchone()
        return _signup_row(row) if row else None

    def save_signup(self, signup: Signup, lease_s: int, error_code: str | None = None,
                    message: str | None = None, failed: bool = False) -> None:
        """Record the saga's state; renews the lease (``lease_s`` 0 lets
        recovery take the row at once)."""
        self.conn.execute(
            "UPDATE users.signups SET state = %s, reached = %s, user_id = %s, "
            "attempts = attempts + %s, last_error_code = coalesce(%s, last_error_code), "
            "last_error = coalesce(%s, last_error), "
            "lease_until = now() + make_interval(secs => %s), updated_at = now() "
            "WHERE signup_id = %s",
            (signup.state.value, signup.reached.value, signup.user_id, 1 if failed else 0,
             error_code, message, lease_s, signup.signup_id))

    def claim_signup(self, signup_id: str, lease_s: int) -> SignupRow | None:
        """Take over an unfinished sign-up whose lease expired, or None."""
        row = self.conn.execute(
            f"UPDATE users.signups SET lease_until = now() + make_interval(secs => %s) "
            f"WHERE signup_id = %s AND lease_until < now() "
            f"AND state NOT IN ('completed', 'rejected', 'rolled_back') "
            f"RETURNING {_SIGNUP_COLUMNS}", (lease_s, signup_id)).fetchone()
        return _signup_row(row) if row else None

    def stale_signup_ids(self, limit: int) -> list[str]:
        rows = self.conn.execute(
            "SELECT signup_id FROM users.signups WHERE lease_until < now() "
            "AND state NOT IN ('completed', 'rejected', 'rolled_back') "
            "ORDER BY lease_until LIMIT %s", (limit,)).fetchall()
        return [str(r[0]) for r in rows]

    # -- profiles and account state -------------------------------------------

    def insert_profile(self, user_id: str, username: str, email: str, signup_id: str) -> None:
        self.conn.execute(
            "INSERT INTO users.profiles (user_id, username, email, signup_id) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (user_id) DO NOTHING",
            (user_id, username, email, signup_id))

    def delete_profile(self, user_id: str) -> None:
        self.conn.execute("DELETE FROM users.profiles WHERE user_id = %s", (user_id,))

    def get_account(self, user_id: str, for_update: bool = False) -> Account | None:
        row = self.conn.execute(
            "SELECT user_id, state, state_reason, state_changed_at, state_changed_by "
            "FROM users.profiles WHERE user_id = %s" + (" FOR UPDATE" if for_update else ""),
            (user_id,)).fetchone()
        if row is None:
            return None
        return Account(str(row[0]), AccountState(row[1]), row[2], ms(row[3]), row[4])

    def get_profile(self, user_id: str) -> dict | None:
        row = self.conn.execute(
            "SELECT user_id, username, email, state, state_reason, state_changed_at, created_at "
            "FROM users.profiles WHERE user_id = %s", (user_id,)).fetchone()
        if row is None:
            return None
        return {"user_id": str(row[0]), "username": row[1], "email": row[2], "state": row[3],
                "state_reason": row[4], "state_changed_at": ms(row[5]), "created_at": ms(row[6])}

    def save_account(self, account: Account) -> None:
        self.conn.execute(
            "UPDATE users.profiles SET state = %s, state_reason = %s, state_changed_at = %s, "
            "state_changed_by = %s WHERE user_id = %s",
            (account.state.value, account.reason, from_ms(account.changed_at_ms),
             account.changed_by, account.user_id))

    # -- API keys --------------------------------------------------------------

    def count_live_keys(self, user_id: str) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM users.api_keys WHERE user_id = %s AND revoked_at IS NULL "
            "AND (expires_at IS NULL OR expires_at > now())", (user_id,)).fetchone()[0]

    def lock_user_keys(self, user_id: str) -> None:
        """Serialise key creation per user (the live-key limit)."""
        self.conn.execute("SELECT 1 FROM users.profiles WHERE user_id = %s FOR UPDATE",
                          (user_id,))

    def insert_api_key(self, key_id: str, api_key: str, user_id: str, label: str,
                       permissions: tuple[str, ...], ip_allowlist: tuple[str, ...] | None,
                       expires_at_ms: int | None, sealed: Sealed) -> dict:
        row = self.conn.execute(
            "INSERT INTO users.api_keys (key_id, api_key, user_id, label, permissions, "
            "ip_allowlist, secret_key_id, secret_ciphertext, expires_at) "
            "VALUES (%s, %s, %s, %s, %s, %s::cidr[], %s, %s, %s) RETURNING created_at",
            (key_id, api_key, user_id, label, list(permissions),
             list(ip_allowlist) if ip_allowlist else None, sealed.key_id, sealed.ciphertext,
             from_ms(expires_at_ms))).fetchone()
        return {"created_at": ms(row[0])}

    _KEY_COLUMNS = ("k.key_id, k.api_key, k.user_id, k.label, k.permissions, "
                    "k.ip_allowlist::text[], k.created_at, k.expires_at, k.revoked_at, "
                    "k.revoked_by, k.expires_at IS NOT NULL AND k.expires_at <= now()")

    @staticmethod
    def _key_view(row) -> dict:
        (key_id, api_key, user_id, label, permissions, allowlist, created, expires, revoked,
         revoked_by, expired) = row
        status = "revoked" if revoked else "expired" if expired else "active"
        return {"key_id": str(key_id), "api_key": api_key, "user_id": str(user_id),
                "label": label, "permissions": list(permissions),
                "ip_allowlist": list(allowlist) if allowlist else None,
                "created_at": ms(created), "expires_at": ms(expires), "revoked_at": ms(revoked),
                "revoked_by": revoked_by, "status": status}

    def list_api_keys(self, user_id: str) -> list[dict]:
        rows = self.conn.execute(
            f"SELECT {self._KEY_COLUMNS} FROM users.api_keys k WHERE k.user_id = %s "
            "ORDER BY k.created_at, k.key_id", (user_id,)).fetchall()
        return [self._key_view(r) for r in rows]

    def get_api_key(self, api_key_or_id: str, for_update: bool = False) -> dict | None:
        column = "key_id" if is_uuid(api_key_or_id) else "api_key"
        row = self.conn.execute(
            f"SELECT {self._KEY_COLUMNS} FROM users.api_keys k WHERE k.{column} = %s"
            + (" FOR UPDATE" if for_update else ""), (api_key_or_id,)).fetchone()
        return self._key_view(row) if row else None

    def revoke_api_keys(self, key_ids: list[str], actor: str) -> None:
        """Revoke and wipe the encrypted secrets."""
        self.conn.execute(
            "UPDATE users.api_keys SET revoked_at = now(), revoked_by = %s, "
            "secret_ciphertext = NULL, secret_key_id = NULL "
            "WHERE key_id = ANY(%s) AND revoked_at IS NULL", (actor, key_ids))

    def set_key_allowlist(self, key_id: str, ip_allowlist: tuple[str, ...] | None) -> None:
        self.conn.execute("UPDATE users.api_keys SET ip_allowlist = %s::cidr[] WHERE key_id = %s",
                          (list(ip_allowlist) if ip_allowlist else None, key_id))

    def live_key_ids(self, user_id: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT key_id FROM users.api_keys WHERE user_id = %s AND revoked_at IS NULL",
            (user_id,)).fetchall()
        return [str(r[0]) for r in rows]

    def key_for_verification(self, api_key: str) -> tuple[KeyRecord, Sealed | None] | None:
        row = self.conn.execute(
            "SELECT k.key_id, k.user_id, k.permissions, k.ip_allowlist::text[], "
            "(extract(epoch FROM k.expires_at) * 1000)::bigint, k.revoked_at IS NOT NULL, "
            "p.state, k.secret_key_id, k.secret_ciphertext "
            "FROM users.api_keys k JOIN users.profiles p USING (user_id) WHERE k.api_key = %s",
            (api_key,)).fetchone()
        if row is None:
            return None
        (key_id, user_id, permissions, allowlist, expires_ms, revoked, state, secret_key_id,
         ciphertext) = row
        record = KeyRecord(str(key_id), str(user_id), tuple(permissions),
                           tuple(allowlist) if allowlist else None,
                           int(expires_ms) if expires_ms is not None else None, bool(revoked),
                           AccountState(state))
        sealed = Sealed(secret_key_id, bytes(ciphertext)) if ciphertext is not None else None
        return record, sealed

    # -- audit and events ------------------------------------------------------

    def audit(self, action: str, actor: str, user_id: str | None = None,
              details: dict | None = None, client_ip: str | None = None) -> None:
        details = dict(details or {})
        inet = _inet(client_ip)
        if client_ip and inet is None:
            details["client_ip_raw"] = str(client_ip)[:100]
        self.conn.execute(
            "INSERT INTO users.audit_log (action, actor, user_id, client_ip, details) "
            "VALUES (%s, %s, %s, %s, %s)", (action, actor, user_id, inet, Jsonb(details)))

    def audit_entries(self, user_id: str | None, action: str | None, limit: int) -> list[dict]:
        rows = self.conn.execute(
            "SELECT id, at, action, user_id, actor, client_ip::text, details "
            "FROM users.audit_log WHERE (%(user)s::uuid IS NULL OR user_id = %(user)s::uuid) "
            "AND (%(action)s::text IS NULL OR action = %(action)s::text) "
            "ORDER BY id DESC LIMIT %(limit)s",
            {"user": user_id, "action": action, "limit": limit}).fetchall()
        return [{"id": r[0], "at": ms(r[1]), "action": r[2], "user_id": r[3] and str(r[3]),
                 "actor": r[4], "client_ip": r[5], "details": r[6]} for r in rows]

    def enqueue(self, event_type: str, payload: dict) -> str:
        """A Nameko event from ``users``, published by the outbox relay after
        commit; built with its definition (services/common/events.py: every
        field there, ``event_version`` stamped)."""
        message_id = str(uuid.uuid4())
        enqueue_event(self.conn, OUTBOX_STREAM, SERVICE, event_type, message_id,
                      events.ALL[event_type].build(**payload))
        return message_id


class Store:
    def __init__(self, pool):
        self.pool = pool

    @contextmanager
    def transaction(self) -> Iterator[StoreTx]:
        with self.pool.connection() as conn:
            with conn.transaction():
                yield StoreTx(conn)

    def ping(self) -> None:
        with self.pool.connection() as conn:
            conn.execute("SELECT 1 FROM users.profiles LIMIT 1").fetchall()


class UsersStore(DependencyProvider):
    def setup(self):
        config = self.container.config
        overrides = {}
        if "POSTGRES_POOL_MAX" in config:
            overrides["max_size"] = int(config["POSTGRES_POOL_MAX"])
        self.pool = make_pool(load_settings(), config.get("POSTGRES_DB"), name="users",
                              **overrides)

    def stop(self):
        self.pool.close()

    def kill(self):
        self.pool.close(timeout=0)

    def get_dependency(self, worker_ctx):
        return Store(self.pool)


# ---------------------------------------------------------------- Keycloak

_PERMANENT = ("USERNAME_TAKEN", "EMAIL_TAKEN", "WEAK_PASSWORD", "INVALID_REQUEST")


def identity_error(exc: Exception, doing: str) -> UsersError:
    """Keycloak's answer, as one of our codes."""
    if isinstance(exc, (KeycloakConnectionError, requests.RequestException)):
        return error("IDENTITY_UNAVAILABLE", f"Keycloak unreachable while {doing}")
    status = getattr(exc, "response_code", None)
    try:
        body = json.loads(getattr(exc, "response_body", b"") or b"{}")
    except (ValueError, TypeError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    text = f"{body.get('errorMessage') or ''} {body.get('error') or ''}"
    if status == 409 and "email" in text:
        return error("EMAIL_TAKEN", "a user with this e-mail exists")
    if status == 409:
        return error("USERNAME_TAKEN", "a user with this username exists")
    if status == 400 and str(body.get("error", "")).startswith("invalidPassword"):
        return error("WEAK_PASSWORD", body.get("error_description") or body["error"])
    if status == 400 and body.get("field"):
        return error("INVALID_REQUEST", f"{body['field']}: {body.get('errorMessage')}")
    return error("IDENTITY_UNAVAILABLE", f"Keycloak answered {status} while {doing}")


def is_permanent_refusal(exc: UsersError) -> bool:
    return exc.code in _PERMANENT


class IdentityClient:
    """Verbs on the realm's users. Every Keycloak failure becomes a UsersError."""

    def __init__(self, provider: "Identity"):
        self._provider = provider

    def _call(self, doing: str, fn, *args, **kwargs):
        try:
            return fn(self._provider.admin(), *args, **kwargs)
        except UsersError:
            raise
        except (KeycloakError, requests.RequestException) as exc:
            raise identity_error(exc, doing) from None

    def create_user(self, username: str, email: str, password: str, first_name: str,
                    last_name: str) -> str:
        """A *disabled* user with this password; its id. The password policy
        is checked by Keycloak in the same call (nothing is created if it fails)."""
        return self._call("creating the user", lambda a: a.create_user({
            "username": username, "email": email, "firstName": first_name,
            "lastName": last_name, "enabled": False, "emailVerified": False,
            "credentials": [{"type": "password", "value": password, "temporary": False}],
        }, exist_ok=False))

    def find_user(self, username: str) -> dict | None:
        users = self._call("looking the user up", lambda a: a.get_users(
            {"username": username, "exact": True}))
        return users[0] if users else None

    def get_user(self, user_id: str) -> dict | None:
        try:
            return self._provider.admin().get_user(user_id)
        except KeycloakError as exc:
            if getattr(exc, "response_code", None) == 404:
                return None
            raise identity_error(exc, "reading the user") from None
        except requests.RequestException as exc:
            raise identity_error(exc, "reading the user") from None

    def grant_role(self, user_id: str, role: str) -> None:
        def grant(a):
            a.assign_realm_roles(user_id, [a.get_realm_role(role)])
        self._call(f"granting {role}", grant)

    def set_enabled(self, user_id: str, enabled: bool) -> None:
        self._call("enabling the user" if enabled else "disabling the user",
                   lambda a: a.update_user(user_id, {"enabled": enabled}))

    def logout(self, user_id: str) -> None:
        self._call("ending the sessions", lambda a: a.user_logout(user_id))

    def delete_user(self, user_id: str) -> None:
        """Idempotent: a user that is gone already is fine."""
        try:
            self._provider.admin().delete_user(user_id)
        except KeycloakError as exc:
            if getattr(exc, "response_code", None) != 404:
                raise identity_error(exc, "deleting the user") from None
        except requests.RequestException as exc:
            raise identity_error(exc, "deleting the user") from None

    def require_totp_setup(self, user_id: str) -> None:
        """Keycloak asks the user to configure TOTP at the next login."""
        def add(a):
            actions = list(a.get_user(user_id).get("requiredActions") or [])
            if "CONFIGURE_TOTP" not in actions:
                a.update_user(user_id, {"requiredActions": actions + ["CONFIGURE_TOTP"]})
        self._call("requiring TOTP setup", add)

    def has_totp(self, user_id: str) -> bool:
        user = self.get_user(user_id)
        return bool(user and user.get("totp"))


class Identity(DependencyProvider):
    """Keycloak's Admin REST API as ``exchange-backend``'s service account
    (realm-management: manage-users, view-users, query-users, view-realm)."""

    def setup(self):
        self.settings = service_settings(self.container.config)
        self._admin = None

    def admin(self):
        # created on first use: the service starts even while Keycloak is down
        if self._admin is None:
            self._admin = backend_admin(self.settings)
        return self._admin

    def get_dependency(self, worker_ctx):
        return IdentityClient(self)


# ---------------------------------------------------------------- tokens

class Authenticator:
    def __init__(self, verifier: TokenVerifier):
        self.verifier = verifier

    def claims(self, access_token) -> dict:
        """The verified claims, or Unauthenticated with the verifier's code."""
        if not access_token or not isinstance(access_token, str):
            raise error("TOKEN_MISSING", "an access token is required")
        token = access_token[7:] if access_token[:7].lower() == "bearer " else access_token
        try:
            return self.verifier.verify(token.strip()).claims
        except InvalidToken as exc:
            raise error(exc.code if exc.code.startswith("TOKEN_") else "TOKEN_INVALID",
                        str(exc)) from None


class Tokens(DependencyProvider):
    """One ``TokenVerifier`` per container: its JWKS cache outlives workers,
    and an unknown key id makes it refetch (key rotation, no restart)."""

    def setup(self):
        self.verifier = TokenVerifier.from_settings(service_settings(self.container.config))

    def get_dependency(self, worker_ctx):
        return Authenticator(self.verifier)


# ---------------------------------------------------------------- wallets

class Wallets:
    def __init__(self, proxy, timeout_s: float, budget: Budget | None = None):
        self.proxy = proxy
        self.timeout_s = timeout_s
        self.budget = budget

    def open_accounts(self, user_id: str):
        """``wallets.open_accounts(user_id)`` (idempotent on the wallets side),
        waiting at most the timeout and at most what the request has left."""
        wait_s = self.timeout_s if self.budget is None else \
            min(self.timeout_s, self.budget.remaining_s())
        try:
            with eventlet.Timeout(wait_s):
                return self.proxy.open_accounts.call_async(user_id).result()
        except eventlet.Timeout:
            raise error("WALLETS_UNAVAILABLE",
                        f"open_accounts did not answer within {wait_s:.3f} s") from None
        except UnknownService:
            raise error("WALLETS_UNAVAILABLE", "the wallets service is not running") from None
        except RemoteError as exc:
            raise error("WALLETS_FAILED", f"{exc.exc_type}: {exc.value}"[:300]) from None
        except Exception as exc:  # a remote error deserialised to its own class
            raise error("WALLETS_FAILED", f"{type(exc).__name__}: {exc}"[:300]) from None


class WalletAccounts(RpcProxy):
    """RPC proxy to the wallets service (``USERS_WALLETS_SERVICE`` in the
    container config names another target, for tests)."""

    def __init__(self):
        super().__init__("wallets")

    def setup(self):
        self.target_service = self.container.config.get("USERS_WALLETS_SERVICE", "wallets")
        self.timeout_s = float(service_settings(self.container.config).get(
            "EXCHANGE_USERS_WALLETS_TIMEOUT_S", "10"))
        super().setup()

    def get_dependency(self, worker_ctx):
        return Wallets(super().get_dependency(worker_ctx), self.timeout_s, Budget(worker_ctx))


# ---------------------------------------------------------------- API-key secrets

class Vault:
    def __init__(self, box: SecretBox):
        self.box = box

    @staticmethod
    def context(key_id: str, user_id: str) -> str:
        return f"users.api_keys:{key_id}:{user_id}"

    def seal(self, secret: str, key_id: str, user_id: str) -> Sealed:
        return self.box.seal(secret, self.context(key_id, user_id))

    def open(self, sealed: Sealed | None, key_id: str, user_id: str) -> str:
        if sealed is None:
            raise error("APIKEY_REVOKED", "the API key's secret was wiped")
        try:
            return self.box.open(sealed, self.context(key_id, user_id))
        except KeyringError as exc:
            log.error("API key %s: secret does not decrypt: %s", key_id, exc)
            raise error("SIGNATURE_INVALID", "signature does not match") from None


class ApiKeyVault(DependencyProvider):
    def setup(self):
        settings = service_settings(self.container.config)
        keyring = settings.get("EXCHANGE_USERS_APIKEY_KEYRING")
        if not keyring:
            log.warning("EXCHANGE_USERS_APIKEY_KEYRING is not set: using the LOCAL-DEV keyring")
            keyring = LOCAL_DEV_APIKEY_KEYRING
        self.vault = Vault(SecretBox(keyring))

    def get_dependency(self, worker_ctx):
        return self.vault
