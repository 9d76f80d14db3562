"""The sign-up saga: which step comes next, and what to undo (pure core).

A sign-up touches three systems that share no transaction: Keycloak (the
identity), PostgreSQL (the profile) and the wallets service (the accounts).
Each step is recorded in ``users.signups`` before the next one starts, so a
crash leaves a row that says exactly how far it got.

Forward steps, in order::

    pending --create_identity--> identity_created   Keycloak user, *disabled*
            --grant_role-------> role_granted       realm role ``trader``
            --create_profile---> profile_created    local profile, state active
            --open_wallets-----> wallets_opened     wallets_rpc.open_accounts(user_id)
            --enable_identity--> completed          the user can sign in now

The Keycloak user stays disabled until the very last step, so a half-done
sign-up can never be used to sign in.

Failure policy:

* Keycloak refuses the identity (taken username/e-mail, weak password) →
  ``rejected``: nothing was created, nothing to undo.
* Any other failure before ``wallets_opened`` → compensate: delete the
  profile, delete the Keycloak user, announce ``signup_rolled_back`` (so
  wallets can drop accounts it may have opened for a call whose reply was
  lost) → ``rolled_back``.
* A failure of the last step (``wallets_opened`` → enabling) is completed
  forward: everything else exists, enabling is idempotent.

Recovery (a timer, or a retry with the same ``signup_id``) applies the same
policy to rows whose lease expired: compensate what is before
``wallets_opened``, complete what is at it. For a row still ``pending`` the
outcome of the Keycloak call is unknown; compensation then looks the user up
by username (see ``orphan_matches``).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class SignupState(str, Enum):
    PENDING = "pending"
    IDENTITY_CREATED = "identity_created"
    ROLE_GRANTED = "role_granted"
    PROFILE_CREATED = "profile_created"
    WALLETS_OPENED = "wallets_opened"
    COMPLETED = "completed"
    REJECTED = "rejected"
    COMPENSATING = "compensating"
    ROLLED_BACK = "rolled_back"


class Step(str, Enum):
    CREATE_IDENTITY = "create_identity"
    GRANT_ROLE = "grant_role"
    CREATE_PROFILE = "create_profile"
    OPEN_WALLETS = "open_wallets"
    ENABLE_IDENTITY = "enable_identity"


FORWARD: dict[SignupState, tuple[Step, SignupState]] = {
    SignupState.PENDING: (Step.CREATE_IDENTITY, SignupState.IDENTITY_CREATED),
    SignupState.IDENTITY_CREATED: (Step.GRANT_ROLE, SignupState.ROLE_GRANTED),
    SignupState.ROLE_GRANTED: (Step.CREATE_PROFILE, SignupState.PROFILE_CREATED),
    SignupState.PROFILE_CREATED: (Step.OPEN_WALLETS, SignupState.WALLETS_OPENED),
    SignupState.WALLETS_OPENED: (Step.ENABLE_IDENTITY, SignupState.COMPLETED),
}

TERMINAL = frozenset({SignupState.COMPLETED, SignupState.REJECTED, SignupState.ROLLED_BACK})
ORDER = list(FORWARD) + [SignupState.COMPLETED]


class Undo(str, Enum):
    DELETE_PROFILE = "delete_profile"
    DELETE_IDENTITY = "delete_identity"
    FIND_AND_DELETE_ORPHAN_IDENTITY = "find_and_delete_orphan_identity"
    ANNOUNCE_ROLLBACK = "announce_rollback"


@dataclass(frozen=True)
class Signup:
    signup_id: str
    username: str
    email: str
    state: SignupState
    user_id: str | None = None
    reached: SignupState = SignupState.PENDING   # furthest forward state before compensating
    created_at_ms: int = 0


def next_step(state: SignupState) -> tuple[Step, SignupState] | None:
    return FORWARD.get(state)


def completes_forward(reached: SignupState) -> bool:
    """Past the point of no return: only enabling the identity is left."""
    return reached is SignupState.WALLETS_OPENED


def on_failure(signup: Signup, permanent_identity_refusal: bool) -> SignupState:
    """The state to move to when the next forward step failed."""
    if signup.state is SignupState.PENDING and permanent_identity_refusal:
        return SignupState.REJECTED
    if completes_forward(signup.state):
        return signup.state            # stays; recovery retries enabling
    return SignupState.COMPENSATING


def recovery_plan(signup: Signup) -> str:
    """``forward`` or ``compensate`` for a stale, non-terminal sign-up."""
    if signup.state in TERMINAL:
        return "none"
    if signup.state is SignupState.COMPENSATING:
        return "compensate"
    return "forward" if completes_forward(signup.state) else "compensate"


def compensation(signup: Signup) -> list[Undo]:
    """What to undo, newest first. ``reached`` is how far the saga got."""
    reached = ORDER.index(signup.reached)
    undo = []
    if reached >= ORDER.index(SignupState.ROLE_GRANTED):
        # the profile exists from profile_created on (written in the same
        # transaction as the state); deleting is idempotent, so undo it as
        # soon as its step may have started
        undo.append(Undo.DELETE_PROFILE)
    undo.append(Undo.DELETE_IDENTITY if signup.user_id else Undo.FIND_AND_DELETE_ORPHAN_IDENTITY)
    if reached >= ORDER.index(SignupState.PROFILE_CREATED):
        # open_accounts may have succeeded even if its reply was lost
        undo.append(Undo.ANNOUNCE_ROLLBACK)
    return undo


def orphan_matches(signup: Signup, user: dict, clock_skew_ms: int = 60_000) -> bool:
    """Is this Keycloak user the one a crashed ``create_identity`` made?

    Keycloak 26 drops unmanaged attributes, so the sign-up id cannot be stored
    on the user. While a sign-up is in flight no other sign-up holds its
    username or e-mail (unique index), so a *disabled* user with the same
    username and e-mail created after the saga started is ours.
    """
    return (user.get("username") == signup.username
            and (user.get("email") or "").lower() == signup.email
            and user.get("enabled") is False
            and int(user.get("createdTimestamp") or 0) >= signup.created_at_ms - clock_skew_ms)
