"""The ``users`` Nameko service: identity (Keycloak), account states and
partner API keys.

Each RPC: validate the input (schemas) → ask a provider → let a pure core
decide (signup, accounts, authz, apikeys) → persist in one transaction with
its audit row and outbox events → the outbox relay publishes the events after
commit. Errors are the typed exceptions of services.users.errors; their
``code`` is the contract (docs/users.md lists them all).

RPCs that act for a person take the person's Keycloak ``access_token`` (as
the gateway received it) and verify it here; the service-to-service RPCs
(``check_can_trade``, ``get_account_state``, ``verify_request``) take ids.

Events (Nameko, source ``users``, at least once, dedupe by message id):
``user_signed_up``, ``signup_rolled_back``, ``user_frozen``, ``user_unfrozen``,
``user_closed``, ``api_key_revoked``, ``api_key_changed``.
"""
from __future__ import annotations

import logging
import time
import uuid

from nameko.timer import timer

from services.common import json_codec, rpc_replies
from services.common.deadlines import rpc
from services.common.metrics import ServiceMetrics
from services.common import principals
from services.common.outbox import OutboxRelay
from services.users import accounts, apikeys, authz, schemas
from services.users import signup as saga
from services.users.accounts import Account, AccountState
from services.users.errors import UsersError, error
from services.users.providers import (
    OUTBOX_STREAM, ApiKeyVault, Identity, Tokens, UsersConfig, UsersStore, WalletAccounts,
    is_permanent_refusal)
from services.users.signup import Signup, SignupState, Step, Undo

rpc_replies.install()
json_codec.install()

log = logging.getLogger(__name__)

RECOVERY_INTERVAL_S = 30
RECOVERY_BATCH = 20


def now_ms() -> int:
    return int(time.time() * 1000)


class UsersService:
    name = "users"

    store = UsersStore()
    identity = Identity()
    tokens = Tokens()
    wallets = WalletAccounts()
    vault = ApiKeyVault()
    config = UsersConfig()
    relay = OutboxRelay(OUTBOX_STREAM)
    metrics = ServiceMetrics()

    # ================================================================ health

    @rpc
    def health(self):
        self.store.ping()
        return {"status": "ok", "service": self.name, "database": "ok",
                "realm": self.config.keycloak_realm}

    # ================================================================ sign-up

    @rpc(expected_exceptions=UsersError)
    def sign_up(self, request):
        """Create the Keycloak user (role ``trader``), the local profile and
        the wallet accounts; returns ``{signup_id, user_id, username, state}``.

        ``request``: ``{username, email, password, first_name, last_name,
        signup_id?}``. ``signup_id`` is an idempotency key: a retry with the
        same id returns the first outcome (or resumes a crashed attempt).
        Raises USERNAME_TAKEN, EMAIL_TAKEN, WEAK_PASSWORD, INVALID_REQUEST
        (nothing created), SIGNUP_FAILED (a later step failed, everything was
        undone), SIGNUP_INCOMPLETE (only enabling the login is left; recovery
        completes it), SIGNUP_IN_PROGRESS.
        """
        req = schemas.load(schemas.SignUpRequest, request)
        signup_id = str(req.signup_id or uuid.uuid4())
        with self.store.transaction() as tx:
            created = tx.insert_signup(signup_id, req.username, req.email,
                                       self.config.signup_lease_s)
            row = tx.get_signup(signup_id)
        if not created:
            return self._replay(row)
        return self._run_forward(row.signup, req)

    @rpc(expected_exceptions=UsersError)
    def get_signup(self, signup_id):
        """The saga's progress: ``{signup_id, username, state, user_id,
        last_error_code, last_error}``."""
        signup_id = schemas.parse_uuid(signup_id, "SIGNUP_NOT_FOUND", "signup_id")
        with self.store.transaction() as tx:
            row = tx.get_signup(signup_id)
        if row is None:
            raise error("SIGNUP_NOT_FOUND", f"no sign-up {signup_id}")
        return self._signup_view(row.signup, row.last_error_code, row.last_error)

    @rpc(expected_exceptions=UsersError)
    def recover_signups(self, signup_ids=None):
        """Finish or undo sign-ups whose worker died (lease expired): the
        given ones, or the oldest few. Runs every 30 s on its own; returns
        ``{signup_id: state after recovery}`` for the ones it took over."""
        if signup_ids is None:
            with self.store.transaction() as tx:
                ids = tx.stale_signup_ids(RECOVERY_BATCH)
        else:
            ids = [schemas.parse_uuid(s, what="signup_id") for s in signup_ids]
        done = {signup_id: self._recover(signup_id) for signup_id in ids}
        return {k: v for k, v in done.items() if v != "busy"}

    @timer(interval=RECOVERY_INTERVAL_S)
    def recover_signups_periodically(self):
        try:
            done = self.recover_signups()
            if done:
                log.info("sign-up recovery: %s", done)
        except Exception:
            log.exception("sign-up recovery failed; next round in %s s", RECOVERY_INTERVAL_S)

    def _signup_view(self, signup: Signup, code=None, message=None) -> dict:
        return {"signup_id": signup.signup_id, "username": signup.username,
                "state": signup.state.value, "user_id": signup.user_id,
                "last_error_code": code, "last_error": message}

    def _replay(self, row):
        """A second call with a known signup_id: the first call's outcome
        (a crashed attempt is recovered first)."""
        if row.signup.state not in saga.TERMINAL:
            if not row.lease_expired or self._recover(row.signup.signup_id) == "busy":
                raise error("SIGNUP_IN_PROGRESS", f"sign-up {row.signup.signup_id} is in progress")
            with self.store.transaction() as tx:
                row = tx.get_signup(row.signup.signup_id)
        signup = row.signup
        if signup.state is SignupState.COMPLETED:
            return self._signup_view(signup)
        if signup.state is SignupState.REJECTED:
            raise error(row.last_error_code or "INVALID_REQUEST", row.last_error or "")
        if signup.state is SignupState.ROLLED_BACK:
            raise error("SIGNUP_FAILED", f"this sign-up was rolled back "
                                         f"({row.last_error_code}: {row.last_error})")
        raise error("SIGNUP_INCOMPLETE", f"sign-up {signup.signup_id} is {signup.state.value}; "
                                         "recovery will finish it")

    def _save(self, signup: Signup, **kwargs) -> None:
        with self.store.transaction() as tx:
            tx.save_signup(signup, self.config.signup_lease_s, **kwargs)

    def _run_forward(self, signup: Signup, req=None):
        """Run the remaining forward steps; on failure apply the saga's policy."""
        while (nxt := saga.next_step(signup.state)) is not None:
            step, target = nxt
            try:
                signup = self._step(step, target, signup, req)
            except UsersError as exc:
                return self._step_failed(signup, step, exc)
            except Exception as exc:  # a bug or an unexpected client error: same policy
                log.exception("sign-up %s: step %s crashed", signup.signup_id, step.value)
                return self._step_failed(signup, step, error(
                    "SIGNUP_FAILED", f"{step.value}: {type(exc).__name__}"))
        return self._signup_view(signup)

    def _step(self, step: Step, target: SignupState, signup: Signup, req) -> Signup:
        user_id = signup.user_id
        if step is Step.CREATE_IDENTITY:
            if req is None:
                raise error("SIGNUP_FAILED", "the password is gone; cannot create the identity")
            user_id = self.identity.create_user(req.username, req.email, req.password,
                                                req.first_name, req.last_name)
        elif step is Step.GRANT_ROLE:
            self.identity.grant_role(user_id, authz.TRADER)
        elif step is Step.OPEN_WALLETS:
            self.wallets.open_accounts(user_id)
        elif step is Step.ENABLE_IDENTITY:
            self.identity.set_enabled(user_id, True)
        done = Signup(signup.signup_id, signup.username, signup.email, target, user_id, target,
                      signup.created_at_ms)
        with self.store.transaction() as tx:
            if step is Step.CREATE_PROFILE:
                tx.insert_profile(user_id, signup.username, signup.email, signup.signup_id)
            tx.save_signup(done, self.config.signup_lease_s)
            if target is SignupState.COMPLETED:
                tx.audit("signup_completed", f"user:{user_id}", user_id,
                         {"signup_id": signup.signup_id, "username": signup.username})
                tx.enqueue("user_signed_up", {"user_id": user_id, "username": signup.username,
                                              "signup_id": signup.signup_id, "at": now_ms()})
        return done

    def _step_failed(self, signup: Signup, step: Step, exc: UsersError):
        permanent = step is Step.CREATE_IDENTITY and is_permanent_refusal(exc)
        new_state = saga.on_failure(signup, permanent)
        log.warning("sign-up %s: %s failed: %s", signup.signup_id, step.value, exc)
        if new_state is SignupState.REJECTED:
            rejected = Signup(signup.signup_id, signup.username, signup.email,
                              SignupState.REJECTED, None, signup.reached, signup.created_at_ms)
            with self.store.transaction() as tx:
                tx.save_signup(rejected, 0, error_code=exc.code, message=exc.message,
                               failed=True)
            raise exc
        if new_state is signup.state:
            # past the point of no return: recovery completes it (lease 0: at once)
            with self.store.transaction() as tx:
                tx.save_signup(signup, 0, error_code=exc.code, message=exc.message, failed=True)
            raise error("SIGNUP_INCOMPLETE", f"{exc.code}: {exc.message}; the sign-up "
                                             f"{signup.signup_id} will be completed")
        compensating = Signup(signup.signup_id, signup.username, signup.email,
                              SignupState.COMPENSATING, signup.user_id, signup.state,
                              signup.created_at_ms)
        self._save(compensating, error_code=exc.code, message=exc.message, failed=True)
        undone = self._compensate(compensating)
        raise error("SIGNUP_FAILED", f"{exc.code}: {exc.message}; " + (
            "nothing was kept, try again later" if undone else
            "what was created is being removed, try again in a few minutes"))

    def _compensate(self, signup: Signup) -> bool:
        """Undo what the saga did; True when rolled back. On failure the row
        stays ``compensating`` and recovery tries again when its lease expires."""
        announce = False
        try:
            for undo in saga.compensation(signup):
                if undo is Undo.DELETE_PROFILE and signup.user_id:
                    with self.store.transaction() as tx:
                        tx.delete_profile(signup.user_id)
                elif undo is Undo.DELETE_IDENTITY:
                    self.identity.delete_user(signup.user_id)
                elif undo is Undo.FIND_AND_DELETE_ORPHAN_IDENTITY:
                    orphan = self.identity.find_user(signup.username)
                    if orphan and saga.orphan_matches(signup, orphan):
                        self.identity.delete_user(orphan["id"])
                elif undo is Undo.ANNOUNCE_ROLLBACK:
                    announce = True
        except UsersError as exc:
            log.warning("sign-up %s: compensation failed (%s); will retry",
                        signup.signup_id, exc)
            with self.store.transaction() as tx:
                tx.save_signup(signup, self.config.signup_lease_s, error_code=exc.code,
                               message=f"compensation: {exc.message}")
            return False
        rolled_back = Signup(signup.signup_id, signup.username, signup.email,
                             SignupState.ROLLED_BACK, signup.user_id, signup.reached,
                             signup.created_at_ms)
        with self.store.transaction() as tx:
            tx.save_signup(rolled_back, 0)
            tx.audit("signup_rolled_back", "system", signup.user_id,
                     {"signup_id": signup.signup_id, "username": signup.username,
                      "reached": signup.reached.value})
            if announce:
                tx.enqueue("signup_rolled_back", {"user_id": signup.user_id,
                                                  "signup_id": signup.signup_id,
                                                  "at": now_ms()})
        return True

    def _recover(self, signup_id: str) -> str:
        with self.store.transaction() as tx:
            row = tx.claim_signup(signup_id, self.config.signup_lease_s)
        if row is None:
            return "busy"
        signup = row.signup
        plan = saga.recovery_plan(signup)
        if plan == "forward":
            try:
                return self._run_forward(signup)["state"]
            except UsersError:
                return signup.state.value
        if plan == "compensate":
            if signup.state is not SignupState.COMPENSATING:
                signup = Signup(signup.signup_id, signup.username, signup.email,
                                SignupState.COMPENSATING, signup.user_id, signup.state,
                                signup.created_at_ms)
                self._save(signup, error_code="SIGNUP_FAILED",
                           message="the worker stopped before the end; recovered")
            return SignupState.ROLLED_BACK.value if self._compensate(signup) \
                else SignupState.COMPENSATING.value
        return signup.state.value

    # ================================================================ identity

    def _claims(self, access_token) -> dict:
        """A person's verified claims: every verb here acts for a person, so a
        service account's token (the backend client's) is refused."""
        claims = self.tokens.claims(access_token)
        if principals.is_service_account(claims):
            raise error("PERSON_REQUIRED", "a service account's token where a person is expected")
        return claims

    def _account(self, tx, user_id: str, for_update: bool = False) -> Account:
        account = tx.get_account(user_id, for_update=for_update)
        if account is None:
            raise error("USER_NOT_FOUND", f"no profile for user {user_id}")
        return account

    @rpc(expected_exceptions=UsersError)
    def authenticate(self, access_token):
        """Verify an access token (signature, issuer, audience, exp, nbf) and
        describe its holder: ``{user_id, username, roles, strong_auth, state,
        expires_at}``. ``state`` is None for realm users without a profile
        (operators). A closed account's tokens are refused (USER_CLOSED)."""
        claims = self._claims(access_token)
        with self.store.transaction() as tx:
            account = tx.get_account(claims["sub"])
        if account is not None and account.state is AccountState.CLOSED:
            raise error("USER_CLOSED", "the account is closed")
        return {"user_id": claims["sub"], "username": claims.get("preferred_username"),
                "roles": sorted(authz.roles_of(claims)),
                "strong_auth": authz.has_strong_auth(claims),
                "state": account.state.value if account else None,
                "expires_at": claims.get("exp")}

    @rpc(expected_exceptions=UsersError)
    def get_profile(self, access_token):
        """The caller's profile, account state, roles and whether TOTP is set up."""
        claims = self._claims(access_token)
        with self.store.transaction() as tx:
            profile = tx.get_profile(claims["sub"])
        if profile is None:
            raise error("USER_NOT_FOUND", "no profile for this user")
        profile["roles"] = sorted(authz.roles_of(claims))
        profile["two_factor_enabled"] = self.identity.has_totp(claims["sub"])
        return profile

    @rpc(expected_exceptions=UsersError)
    def enable_two_factor(self, access_token):
        """Ask Keycloak to make the caller configure TOTP at the next login
        (required action CONFIGURE_TOTP on Keycloak's own pages). Returns
        ``{two_factor_enabled, required_action}``."""
        claims = self._claims(access_token)
        user_id = claims["sub"]
        with self.store.transaction() as tx:
            self._require_not_closed(self._account(tx, user_id))
        if self.identity.has_totp(user_id):
            return {"two_factor_enabled": True, "required_action": None}
        self.identity.require_totp_setup(user_id)
        with self.store.transaction() as tx:
            tx.audit("two_factor_setup_requested", f"user:{user_id}", user_id)
        return {"two_factor_enabled": False, "required_action": "CONFIGURE_TOTP"}

    @staticmethod
    def _require_not_closed(account: Account) -> None:
        if account.state is AccountState.CLOSED:
            raise error("USER_CLOSED", "the account is closed")

    @rpc(expected_exceptions=UsersError)
    def authorize_withdrawal(self, access_token, client_ip=None):
        """May the token's holder withdraw now? Needs the ``trader`` role, an
        active account and a session that passed OTP within the step-up age.
        Returns ``{user_id, authorized: True}``; refusals are audited."""
        claims = self._claims(access_token)
        user_id = claims["sub"]
        try:
            authz.require_role(claims, authz.TRADER)
            with self.store.transaction() as tx:
                accounts.require_can_withdraw(self._account(tx, user_id))
            authz.require_strong_auth(claims, now_ms() // 1000, self.config.step_up_max_age_s)
        except UsersError as exc:
            with self.store.transaction() as tx:
                tx.audit("withdrawal_refused", f"user:{user_id}", user_id, {"code": exc.code},
                         client_ip)
            raise
        return {"user_id": user_id, "authorized": True}

    # ================================================================ account states

    @rpc(expected_exceptions=UsersError)
    def freeze_user(self, access_token, user_id, reason):
        """Admin: the user can no longer trade or withdraw; ``user_frozen`` is
        published so the orders service cancels the open orders."""
        return self._change_state(access_token, user_id, reason, "freeze")

    @rpc(expected_exceptions=UsersError)
    def unfreeze_user(self, access_token, user_id, reason):
        return self._change_state(access_token, user_id, reason, "unfreeze")

    @rpc(expected_exceptions=UsersError)
    def close_user(self, access_token, user_id, reason):
        """Admin: disable the Keycloak user and end its sessions, revoke every
        API key, mark the account closed (final)."""
        return self._change_state(access_token, user_id, reason, "close")

    def _change_state(self, access_token, user_id, reason, action: str):
        claims = self._claims(access_token)
        authz.require_role(claims, authz.ADMIN)
        request = schemas.load(schemas.StateChangeRequest, {"user_id": user_id, "reason": reason})
        user_id, actor = str(request.user_id), f"admin:{claims['sub']}"
        with self.store.transaction() as tx:
            current = self._account(tx, user_id)
        accounts.transition(current, action, actor, request.reason, now_ms())  # fail early
        if action == "close":
            # Keycloak first: a retry after a database failure finds the
            # account still open and does it all again (both idempotent).
            self.identity.set_enabled(user_id, False)
            self.identity.logout(user_id)
        with self.store.transaction() as tx:
            account = self._account(tx, user_id, for_update=True)
            changed, event = accounts.transition(account, action, actor, request.reason, now_ms())
            tx.save_account(changed)
            details = {"reason": changed.reason, "from": account.state.value}
            if action == "close":
                revoked = tx.live_key_ids(user_id)
                tx.revoke_api_keys(revoked, actor)
                details["api_keys_revoked"] = revoked
                for key_id in revoked:
                    tx.enqueue("api_key_revoked", {"key_id": key_id, "user_id": user_id,
                                                   "by": actor, "at": changed.changed_at_ms})
            tx.audit(event.name, actor, user_id, details)
            tx.enqueue(event.name, event.payload)
        return self._state_view(changed)

    @staticmethod
    def _state_view(account: Account) -> dict:
        return {"user_id": account.user_id, "state": account.state.value,
                "reason": account.reason, "changed_at": account.changed_at_ms,
                "changed_by": account.changed_by}

    @rpc(expected_exceptions=UsersError)
    def get_account_state(self, user_id):
        """``{user_id, state, reason, changed_at, changed_by}`` (for services)."""
        user_id = schemas.parse_uuid(user_id, "USER_NOT_FOUND", "user_id")
        with self.store.transaction() as tx:
            return self._state_view(self._account(tx, user_id))

    @rpc(expected_exceptions=UsersError)
    def check_can_trade(self, user_id):
        """For orders: ``{user_id, state: "active", can_trade: True}`` or
        USER_FROZEN / USER_CLOSED / USER_NOT_FOUND."""
        user_id = schemas.parse_uuid(user_id, "USER_NOT_FOUND", "user_id")
        with self.store.transaction() as tx:
            account = self._account(tx, user_id)
        accounts.require_can_trade(account)
        return {"user_id": user_id, "state": account.state.value, "can_trade": True}

    @rpc(expected_exceptions=UsersError)
    def check_can_withdraw(self, user_id):
        """For wallets: the account-state half of the withdrawal rule (the
        second factor is checked by ``authorize_withdrawal`` on the token)."""
        user_id = schemas.parse_uuid(user_id, "USER_NOT_FOUND", "user_id")
        with self.store.transaction() as tx:
            account = self._account(tx, user_id)
        accounts.require_can_withdraw(account)
        return {"user_id": user_id, "state": account.state.value, "can_withdraw": True}

    # ================================================================ API keys

    @rpc(expected_exceptions=UsersError)
    def create_api_key(self, access_token, request):
        """Create a key for the caller (role ``trader``, active account).

        ``request``: ``{label, permissions?: [read|trade|withdraw], ip_allowlist?:
        [ip or cidr], expires_at?: ms}``. A key with ``withdraw`` needs an IP
        allow-list and a session that passed OTP. The ``secret`` is in this
        answer only: it is stored encrypted and never returned again.
        """
        claims = self._claims(access_token)
        authz.require_role(claims, authz.TRADER)
        req = schemas.load(schemas.CreateApiKeyRequest, request)
        permissions = apikeys.normalize_permissions(req.permissions)
        allowlist = apikeys.normalize_allowlist(req.ip_allowlist)
        apikeys.check_new_key(permissions, allowlist, req.expires_at, now_ms())
        if apikeys.WITHDRAW in permissions:
            authz.require_strong_auth(claims, now_ms() // 1000, self.config.step_up_max_age_s)
        user_id = claims["sub"]
        key_id, api_key, secret = str(uuid.uuid4()), apikeys.generate_token(), \
            apikeys.generate_token()
        sealed = self.vault.seal(secret, key_id, user_id)
        with self.store.transaction() as tx:
            tx.lock_user_keys(user_id)
            accounts.require_can_trade(self._account(tx, user_id))
            apikeys.check_key_limit(tx.count_live_keys(user_id))
            created = tx.insert_api_key(key_id, api_key, user_id, req.label, permissions,
                                        allowlist, req.expires_at, sealed)
            tx.audit("api_key_created", f"user:{user_id}", user_id,
                     {"key_id": key_id, "label": req.label, "permissions": list(permissions),
                      "ip_allowlist": list(allowlist) if allowlist else None,
                      "expires_at": req.expires_at})
        return {"key_id": key_id, "api_key": api_key, "secret": secret, "label": req.label,
                "permissions": list(permissions),
                "ip_allowlist": list(allowlist) if allowlist else None,
                "expires_at": req.expires_at, "created_at": created["created_at"],
                "status": "active"}

    @rpc(expected_exceptions=UsersError)
    def list_api_keys(self, access_token):
        """The caller's keys, newest last, with ``status`` active / expired /
        revoked; never a secret."""
        claims = self._claims(access_token)
        with self.store.transaction() as tx:
            return tx.list_api_keys(claims["sub"])

    @staticmethod
    def _managed_key(tx, claims: dict, api_key) -> tuple[dict, str, bool]:
        """The live key ``api_key`` (or its key id) that the token's holder
        may manage (its owner, or an admin), locked for update; with the
        actor's name and whether it is an admin. Another user's key is "not
        found" to a non-admin: no probing."""
        if not (apikeys.valid_key_format(api_key) or schemas.is_uuid(api_key)):
            raise error("APIKEY_NOT_FOUND", "no such API key")
        is_admin = authz.ADMIN in authz.roles_of(claims)
        key = tx.get_api_key(api_key, for_update=True)
        if key is None or (key["user_id"] != claims["sub"] and not is_admin):
            raise error("APIKEY_NOT_FOUND", "no such API key")
        if key["status"] == "revoked":
            raise error("APIKEY_ALREADY_REVOKED", f"revoked at {key['revoked_at']}")
        return key, f"{'admin' if is_admin else 'user'}:{claims['sub']}", is_admin

    @rpc(expected_exceptions=UsersError)
    def revoke_api_key(self, access_token, api_key):
        """Revoke a key (by ``api_key`` or ``key_id``): its owner or an admin.
        The encrypted secret is wiped; ``api_key_revoked`` is published."""
        claims = self._claims(access_token)
        with self.store.transaction() as tx:
            key, actor, _ = self._managed_key(tx, claims, api_key)
            tx.revoke_api_keys([key["key_id"]], actor)
            tx.audit("api_key_revoked", actor, key["user_id"], {"key_id": key["key_id"]})
            tx.enqueue("api_key_revoked", {"key_id": key["key_id"], "user_id": key["user_id"],
                                           "by": actor, "at": now_ms()})
            return tx.get_api_key(key["key_id"])

    @rpc(expected_exceptions=UsersError)
    def change_api_key(self, access_token, api_key, request):
        """Replace a live key's IP allow-list (by ``api_key`` or ``key_id``):
        its owner or an admin. ``request``: ``{ip_allowlist: [ip or cidr] |
        null}`` (null: any IP; a key that may withdraw keeps an allow-list and
        needs a session that passed OTP, as at creation). Publishes
        ``api_key_changed`` so gateways drop their cached copy."""
        claims = self._claims(access_token)
        req = schemas.load(schemas.ChangeApiKeyRequest, request)
        allowlist = apikeys.normalize_allowlist(req.ip_allowlist)
        with self.store.transaction() as tx:
            key, actor, is_admin = self._managed_key(tx, claims, api_key)
            permissions = tuple(key["permissions"])
            apikeys.check_new_key(permissions, allowlist, None, now_ms())
            if apikeys.WITHDRAW in permissions and not is_admin:
                authz.require_strong_auth(claims, now_ms() // 1000,
                                          self.config.step_up_max_age_s)
            tx.set_key_allowlist(key["key_id"], allowlist)
            tx.audit("api_key_changed", actor, key["user_id"],
                     {"key_id": key["key_id"], "ip_allowlist": list(allowlist) if allowlist
                      else None, "previous_ip_allowlist": key["ip_allowlist"]})
            tx.enqueue("api_key_changed", {"key_id": key["key_id"], "user_id": key["user_id"],
                                           "by": actor, "at": now_ms()})
            return tx.get_api_key(key["key_id"])

    @rpc(expected_exceptions=UsersError)
    def verification_material(self, api_key):
        """For the gateway's key cache (gateway/keycache.py): what verifying
        the requests signed with ``api_key`` needs, or None for a malformed or
        unknown key: ``{key_id, user_id, permissions, ip_allowlist,
        expires_at, revoked, account_state, secret}``. ``secret`` is the plain
        HMAC secret (HMAC needs it), None once the key is revoked or when it
        does not decrypt. Only the gateway may call users' verbs (RabbitMQ
        grants); it keeps the answer in memory, never logs it, and drops it
        on ``api_key_revoked``, ``api_key_changed``, ``user_frozen``,
        ``user_unfrozen``, ``user_closed`` or after its TTL (docs/security.md).
        A refused request is re-decided, and audited, by ``verify_request``."""
        if not apikeys.valid_key_format(api_key):
            return None
        with self.store.transaction() as tx:
            found = tx.key_for_verification(api_key)
        if found is None:
            return None
        record, sealed = found
        secret = None
        if sealed is not None:
            try:
                secret = self.vault.open(sealed, record.key_id, record.user_id)
            except UsersError:
                secret = None
        return {"key_id": record.key_id, "user_id": record.user_id,
                "permissions": list(record.permissions),
                "ip_allowlist": list(record.ip_allowlist) if record.ip_allowlist else None,
                "expires_at": record.expires_at_ms, "revoked": record.revoked,
                "account_state": record.account_state.value, "secret": secret}

    @rpc(expected_exceptions=UsersError)
    def verify_request(self, api_key, signature, payload, timestamp, recv_window=None,
                       client_ip=None, permission=apikeys.READ):
        """For the gateway: authenticate a signed partner request.

        ``payload`` is the exact signed string (query string + body, without
        ``signature``); ``timestamp``/``recv_window`` are the request's
        ``timestamp``/``recvWindow`` in ms; ``permission`` is what the endpoint
        needs (read, trade, withdraw). Returns ``{user_id, key_id,
        permissions}``; every refusal raises its own code (see apikeys.verify)
        and is written to the audit log.
        """
        record, sealed = None, None
        if apikeys.valid_key_format(api_key):
            with self.store.transaction() as tx:
                found = tx.key_for_verification(api_key)
            if found is not None:
                record, sealed = found
        try:
            verified = apikeys.verify(
                record, signature, payload, timestamp, recv_window, client_ip, permission,
                now_ms(), lambda: self.vault.open(sealed, record.key_id, record.user_id))
        except UsersError as exc:
            with self.store.transaction() as tx:
                tx.audit("api_request_rejected",
                         f"apikey:{record.key_id}" if record else "apikey:unknown",
                         record.user_id if record else None,
                         {"code": exc.code, "permission": str(permission)[:20],
                          "key_id": record.key_id if record else None,
                          "api_key_prefix": None if record else str(api_key)[:8]},
                         client_ip)
            raise
        return {"user_id": verified.user_id, "key_id": verified.key_id,
                "permissions": list(verified.permissions)}

    # ================================================================ audit

    @rpc(expected_exceptions=UsersError)
    def audit_log(self, access_token, user_id=None, action=None, limit=100):
        """Admin: the newest audit entries, optionally for one user / action."""
        claims = self._claims(access_token)
        authz.require_role(claims, authz.ADMIN)
        if user_id is not None:
            user_id = schemas.parse_uuid(user_id, what="user_id")
        if not isinstance(limit, int) or not 0 < limit <= 1000:
            raise error("INVALID_REQUEST", "limit must be 1..1000")
        with self.store.transaction() as tx:
            return tx.audit_entries(user_id, action, limit)
