"""Account states: who may trade, and which transitions exist."""
import pytest

from services.users.accounts import Account, AccountState, require_can_trade, transition
from services.users.errors import UsersError

NOW = 1_800_000_000_000


def account(state=AccountState.ACTIVE):
    return Account("u-1", state)


def test_freezing_an_active_user_emits_user_frozen():
    frozen, event = transition(account(), "freeze", "admin:a-1", " suspicious withdrawals ", NOW)
    assert frozen.state is AccountState.FROZEN
    assert frozen.reason == "suspicious withdrawals"
    assert event.name == "user_frozen"
    assert event.payload == {"user_id": "u-1", "state": "frozen", "previous_state": "active",
                             "reason": "suspicious withdrawals", "by": "admin:a-1", "at": NOW}


def test_unfreezing_restores_trading():
    frozen, _ = transition(account(), "freeze", "admin:a-1", "check", NOW)
    active, event = transition(frozen, "unfreeze", "admin:a-1", "cleared", NOW + 1)
    assert active.state is AccountState.ACTIVE and event.name == "user_unfrozen"
    require_can_trade(active)


@pytest.mark.parametrize("state,code", [(AccountState.FROZEN, "USER_FROZEN"),
                                        (AccountState.CLOSED, "USER_CLOSED")])
def test_frozen_and_closed_users_cannot_trade(state, code):
    with pytest.raises(UsersError) as caught:
        require_can_trade(account(state))
    assert caught.value.code == code


@pytest.mark.parametrize("state,action", [
    (AccountState.FROZEN, "freeze"), (AccountState.ACTIVE, "unfreeze"),
    (AccountState.CLOSED, "freeze"), (AccountState.CLOSED, "unfreeze"),
    (AccountState.CLOSED, "close")])
def test_transitions_not_allowed_from_the_current_state(state, action):
    with pytest.raises(UsersError) as caught:
        transition(account(state), action, "admin:a-1", "why", NOW)
    assert caught.value.code == "ACCOUNT_STATE_CONFLICT"


@pytest.mark.parametrize("state", [AccountState.ACTIVE, AccountState.FROZEN])
def test_close_from_active_or_frozen(state):
    closed, event = transition(account(state), "close", "admin:a-1", "user asked", NOW)
    assert closed.state is AccountState.CLOSED and event.name == "user_closed"


def test_a_reason_is_required():
    with pytest.raises(UsersError) as caught:
        transition(account(), "freeze", "admin:a-1", "  ", NOW)
    assert caught.value.code == "INVALID_REQUEST"
