"""Account states and their transitions (pure core).

    active --freeze--> frozen --unfreeze--> active
    active|frozen --close--> closed          (closed is final)

A frozen user keeps signing in and reading, but cannot trade or withdraw, and
the orders service cancels the user's open orders when it hears
``user_frozen``. A closed user cannot do anything; the service also disables
the Keycloak user and revokes the API keys.

The core decides and returns events; the service persists and dispatches.
Time is an input (milliseconds since the epoch).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from services.users.errors import error


class AccountState(str, Enum):
    ACTIVE = "active"
    FROZEN = "frozen"
    CLOSED = "closed"


@dataclass(frozen=True)
class Account:
    user_id: str
    state: AccountState
    reason: str | None = None
    changed_at_ms: int | None = None
    changed_by: str | None = None


@dataclass(frozen=True)
class AccountEvent:
    """An event for other services: ``name`` is the Nameko event type."""
    name: str
    payload: dict


_TRANSITIONS = {
    # action: (allowed from, to, event name)
    "freeze": ({AccountState.ACTIVE}, AccountState.FROZEN, "user_frozen"),
    "unfreeze": ({AccountState.FROZEN}, AccountState.ACTIVE, "user_unfrozen"),
    "close": ({AccountState.ACTIVE, AccountState.FROZEN}, AccountState.CLOSED, "user_closed"),
}


def transition(account: Account, action: str, actor: str, reason: str,
               now_ms: int) -> tuple[Account, AccountEvent]:
    """Apply ``action`` (freeze, unfreeze, close); raise ACCOUNT_STATE_CONFLICT
    when the current state does not allow it."""
    allowed, target, event_name = _TRANSITIONS[action]
    if account.state not in allowed:
        raise error("ACCOUNT_STATE_CONFLICT",
                    f"cannot {action} an account that is {account.state.value}")
    if not reason or not reason.strip():
        raise error("INVALID_REQUEST", f"{action} needs a reason")
    changed = replace(account, state=target, reason=reason.strip(), changed_at_ms=now_ms,
                      changed_by=actor)
    event = AccountEvent(event_name, {
        "user_id": account.user_id, "state": target.value, "previous_state": account.state.value,
        "reason": changed.reason, "by": actor, "at": now_ms,
    })
    return changed, event


def require_can_trade(account: Account) -> None:
    """Raise USER_FROZEN / USER_CLOSED unless the account may place orders."""
    _require_active(account)


def require_can_withdraw(account: Account) -> None:
    _require_active(account)


def _require_active(account: Account) -> None:
    if account.state is AccountState.FROZEN:
        raise error("USER_FROZEN", f"user {account.user_id} is frozen")
    if account.state is AccountState.CLOSED:
        raise error("USER_CLOSED", f"user {account.user_id} is closed")
