"""Holds and releases on the real PostgreSQL: idempotent by ref, never below
zero -- also with many concurrent callers."""
import uuid

import eventlet
import pytest

from services.wallets.assets import ASSETS
from services.wallets.errors import (
    IdempotencyConflict,
    InsufficientFunds,
    InsufficientLocked,
    UnknownUser,
    WalletsError,
)
from services.wallets.providers import PostgresLedger

BTC = ASSETS["BTC"]
ONE_BTC = 100_000_000


def ref():
    return f"order:{uuid.uuid4()}"


def test_a_hold_locks_funds_and_a_release_gives_them_back(ledger, new_user, fund):
    user = new_user()
    fund(user, "BTC", ONE_BTC)
    held = ledger.hold(user, BTC, 40_000_000, ref())
    assert held["amount"] == "0.40000000" and held["user"] == user
    assert ledger.balance(user, BTC) == {"user": user, "asset": "BTC",
                                         "available": "0.60000000", "locked": "0.40000000"}
    ledger.release(user, BTC, 15_000_000, ref())
    assert ledger.balance(user, BTC)["available"] == "0.75000000"
    assert ledger.balance(user, BTC)["locked"] == "0.25000000"


def test_replaying_a_hold_returns_the_original_result_and_changes_nothing(ledger, new_user, fund, footprint):
    user = new_user()
    fund(user, "BTC", ONE_BTC)
    order = ref()
    first = ledger.hold(user, BTC, 40_000_000, order)
    before = footprint(user)
    assert ledger.hold(user, BTC, 40_000_000, order) == first
    # even after the rest of the balance is gone, the replay is an answer, not an error
    ledger.hold(user, BTC, 60_000_000, ref())
    assert ledger.hold(user, BTC, 40_000_000, order) == first
    after = footprint(user)
    assert len(after["postings"]) == len(before["postings"]) + 2  # only the second hold
    assert ledger.balance(user, BTC)["locked"] == "1.00000000"


def test_replaying_a_release_changes_nothing(ledger, new_user, fund, footprint):
    user = new_user()
    fund(user, "BTC", ONE_BTC)
    ledger.hold(user, BTC, ONE_BTC, ref())
    done = ref()
    first = ledger.release(user, BTC, 30_000_000, done)
    before = footprint(user)
    assert ledger.release(user, BTC, 30_000_000, done) == first
    assert footprint(user) == before


def test_a_ref_reused_for_another_amount_is_a_conflict_and_writes_nothing(ledger, new_user, fund, footprint):
    user = new_user()
    fund(user, "BTC", ONE_BTC)
    order = ref()
    ledger.hold(user, BTC, 10_000_000, order)
    before = footprint(user)
    with pytest.raises(IdempotencyConflict):
        ledger.hold(user, BTC, 20_000_000, order)
    other = new_user()
    fund(other, "BTC", ONE_BTC)
    with pytest.raises(IdempotencyConflict):  # refs are global: another user cannot take it
        ledger.hold(other, BTC, 10_000_000, order)
    assert footprint(user) == before


def test_a_hold_beyond_the_available_balance_is_refused_and_writes_nothing(ledger, new_user, fund, footprint):
    user = new_user()
    fund(user, "BTC", ONE_BTC)
    before = footprint(user)
    with pytest.raises(InsufficientFunds) as raised:
        ledger.hold(user, BTC, ONE_BTC + 1, ref())
    assert str(raised.value).startswith("INSUFFICIENT_FUNDS: ")
    assert footprint(user) == before


def test_a_release_beyond_the_locked_balance_is_refused(ledger, new_user, fund, footprint):
    user = new_user()
    fund(user, "BTC", ONE_BTC)
    ledger.hold(user, BTC, 10, ref())
    before = footprint(user)
    with pytest.raises(InsufficientLocked):
        ledger.release(user, BTC, 11, ref())
    assert footprint(user) == before


def test_a_user_without_accounts_is_unknown(ledger):
    stranger = f"nobody-{uuid.uuid4()}"
    with pytest.raises(UnknownUser):
        ledger.hold(stranger, BTC, 1, ref())
    with pytest.raises(UnknownUser):
        ledger.balances(stranger)


@pytest.mark.parametrize("group_commit", [True, False], ids=["grouped", "one-statement-each"])
def test_fifty_concurrent_holds_on_funds_for_ten_exactly_ten_succeed(wallets_pool, new_user, fund,
                                                                     group_commit):
    """50 greenthreads through the provider, a pool of 20 connections. With
    group commit the core decides on locked rows; without it, each hold is
    its own statement and the CHECK constraint decides under row locks."""
    ledger = PostgresLedger(wallets_pool, group_commit=group_commit)
    user = new_user()
    unit = 1_000_000  # 0.01 BTC
    fund(user, "BTC", 10 * unit)
    in_flight, most_in_flight = 0, 0

    def one(i):
        nonlocal in_flight, most_in_flight
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        try:
            ledger.hold(user, BTC, unit, f"race:{user}:{i}")
            return "held"
        except WalletsError as exc:
            return exc.code
        finally:
            in_flight -= 1

    try:
        outcomes = list(eventlet.GreenPool(50).imap(one, range(50)))
    finally:
        ledger.close()
    assert outcomes.count("held") == 10
    assert outcomes.count("INSUFFICIENT_FUNDS") == 40
    assert most_in_flight >= 20  # at least a pool's worth were waiting on the database at once
    assert ledger.balance(user, BTC) == {"user": user, "asset": "BTC",
                                         "available": "0.00000000", "locked": "0.10000000"}


def test_concurrent_requests_in_one_group_get_their_own_outcomes(ledger, new_user, fund):
    rich, poor = new_user(), new_user()
    fund(rich, "BTC", ONE_BTC)
    same = ref()
    calls = [
        (rich, 10, same), (rich, 10, same),              # the same hold twice: one posting
        (rich, 20, ref()),
        (poor, 1, ref()),                                 # nothing deposited
        (f"ghost-{uuid.uuid4()}", 1, ref()),              # no accounts
        (rich, 30, same),                                 # same ref, other amount
    ]

    def one(call):
        user, amount, order = call
        try:
            return ledger.hold(user, BTC, amount, order)
        except WalletsError as exc:
            return exc.code

    outcomes = list(eventlet.GreenPool(len(calls)).imap(one, calls))
    assert outcomes[0] == outcomes[1] and outcomes[0]["amount"] == "0.00000010"
    assert outcomes[2]["amount"] == "0.00000020"
    assert outcomes[3:] == ["INSUFFICIENT_FUNDS", "UNKNOWN_USER", "IDEMPOTENCY_CONFLICT"]
    assert ledger.balance(rich, BTC)["locked"] == "0.00000030"
