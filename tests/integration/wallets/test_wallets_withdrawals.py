"""Withdrawals on the real PostgreSQL: hold on request, the state machine,
each transition journaled, limits, and illegal steps that write nothing."""
import dataclasses
import uuid

import pytest

from services.wallets.assets import ASSETS
from services.wallets.errors import (
    IdempotencyConflict,
    IllegalWithdrawalTransition,
    InsufficientFunds,
    InvalidId,
    UnknownUser,
    WithdrawalBelowMinimum,
    WithdrawalLimitExceeded,
    WithdrawalNotFound,
    WithdrawalsDisabled,
)
from services.wallets.ledger import APPROVE, CANCEL, MARK_SENT, REJECT

BTC = ASSETS["BTC"]
ADDRESS = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
TXID = "ab" * 32


def system_balance(db, kind, asset="BTC"):
    return db.execute("SELECT available FROM wallets.accounts WHERE owner = %s AND asset = %s",
                      (f"system:{kind}", asset)).fetchone()[0]


@pytest.fixture
def alice(new_user, fund):
    user = new_user("alice")
    fund(user, "BTC", 20 * 10 ** 8)
    return user


def request(ledger, user, amount=10 ** 8, ref=None):
    return ledger.request_withdrawal(user, BTC, ADDRESS, amount, ref or f"w-{uuid.uuid4()}")


def test_a_request_holds_amount_plus_fee(ledger, alice):
    withdrawal = request(ledger, alice)
    assert withdrawal["status"] == "pending"
    assert withdrawal["amount"] == "1.00000000" and withdrawal["fee"] == "0.00020000"
    assert ledger.balance(alice, BTC)["available"] == "18.99980000"
    assert ledger.balance(alice, BTC)["locked"] == "1.00020000"


def test_approved_and_sent_the_money_leaves_through_the_clearing_account(ledger, alice, db):
    cleared, fees = system_balance(db, "withdrawals_clearing"), system_balance(db, "fee_revenue")
    withdrawal_id = request(ledger, alice)["withdrawal_id"]
    assert ledger.change_withdrawal(withdrawal_id, APPROVE, "admin-1")["status"] == "approved"
    sent = ledger.change_withdrawal(withdrawal_id, MARK_SENT, "admin-1", txid=TXID.upper())
    assert sent["status"] == "sent" and sent["txid"] == TXID
    assert ledger.balance(alice, BTC)["locked"] == "0.00000000"
    assert ledger.balance(alice, BTC)["available"] == "18.99980000"
    assert system_balance(db, "withdrawals_clearing") - cleared == 10 ** 8
    assert system_balance(db, "fee_revenue") - fees == 20_000
    history = ledger.withdrawal(withdrawal_id, alice)["transitions"]
    assert [(t["from"], t["to"], t["actor"]) for t in history] == [
        (None, "pending", alice), ("pending", "approved", "admin-1"), ("approved", "sent", "admin-1")]
    assert history[0]["transaction_id"] and history[2]["transaction_id"]


@pytest.mark.parametrize("steps, status", [
    ([(REJECT, {})], "rejected"),
    ([(APPROVE, {}), (REJECT, {})], "rejected"),
    ([(CANCEL, {"owner": "me"})], "cancelled"),
])
def test_rejected_or_cancelled_the_hold_is_released(ledger, alice, steps, status):
    withdrawal_id = request(ledger, alice)["withdrawal_id"]
    for action, extra in steps:
        owner = alice if extra.get("owner") else None
        result = ledger.change_withdrawal(withdrawal_id, action, alice if owner else "admin-1",
                                          reason="checks failed", owner=owner)
    assert result["status"] == status
    assert ledger.balance(alice, BTC) == {"user": alice, "asset": "BTC",
                                          "available": "20.00000000", "locked": "0.00000000"}


@pytest.mark.parametrize("path, illegal", [
    ([], (MARK_SENT, {"txid": TXID})),                         # not approved yet
    ([(APPROVE, {})], (CANCEL, {"owner": True})),              # the user is too late
    ([(REJECT, {})], (APPROVE, {})),
    ([(REJECT, {})], (MARK_SENT, {"txid": TXID})),
    ([(CANCEL, {"owner": True})], (REJECT, {})),
    ([(APPROVE, {}), (MARK_SENT, {"txid": TXID})], (REJECT, {})),
    ([(APPROVE, {}), (MARK_SENT, {"txid": TXID})], (CANCEL, {"owner": True})),
    ([(APPROVE, {}), (MARK_SENT, {"txid": TXID})], (MARK_SENT, {"txid": "cd" * 32})),
])
def test_an_illegal_transition_is_refused_and_writes_nothing(ledger, alice, footprint, db, path, illegal):
    withdrawal_id = request(ledger, alice)["withdrawal_id"]

    def apply(action, extra):
        owner = alice if extra.get("owner") else None
        return ledger.change_withdrawal(withdrawal_id, action, owner or "admin-1",
                                        txid=extra.get("txid"), owner=owner)

    for action, extra in path:
        apply(action, extra)
    before = footprint(alice), db.execute(
        "SELECT count(*) FROM wallets.withdrawal_transitions WHERE withdrawal_id = %s",
        (withdrawal_id,)).fetchone()
    with pytest.raises(IllegalWithdrawalTransition) as raised:
        apply(*illegal)
    assert str(raised.value).startswith("ILLEGAL_WITHDRAWAL_TRANSITION: ")
    assert (footprint(alice), db.execute(
        "SELECT count(*) FROM wallets.withdrawal_transitions WHERE withdrawal_id = %s",
        (withdrawal_id,)).fetchone()) == before


def test_repeating_the_last_step_changes_nothing(ledger, alice, footprint):
    withdrawal_id = request(ledger, alice)["withdrawal_id"]
    ledger.change_withdrawal(withdrawal_id, APPROVE, "admin-1")
    sent = ledger.change_withdrawal(withdrawal_id, MARK_SENT, "admin-1", txid=TXID)
    before = footprint(alice)
    assert ledger.change_withdrawal(withdrawal_id, MARK_SENT, "admin-2", txid=TXID) == sent
    assert footprint(alice) == before


def test_only_the_owner_may_cancel(ledger, alice, new_user, footprint):
    withdrawal_id = request(ledger, alice)["withdrawal_id"]
    before = footprint(alice)
    mallory = new_user("mallory")
    with pytest.raises(WithdrawalNotFound):
        ledger.change_withdrawal(withdrawal_id, CANCEL, mallory, owner=mallory)
    with pytest.raises(WithdrawalNotFound):
        ledger.withdrawal(withdrawal_id, mallory)
    assert footprint(alice) == before


def test_a_bad_txid_or_an_unknown_withdrawal_writes_nothing(ledger, alice, footprint):
    withdrawal_id = request(ledger, alice)["withdrawal_id"]
    ledger.change_withdrawal(withdrawal_id, APPROVE, "admin-1")
    before = footprint(alice)
    with pytest.raises(InvalidId):
        ledger.change_withdrawal(withdrawal_id, MARK_SENT, "admin-1", txid="0x" + TXID)
    with pytest.raises(WithdrawalNotFound):
        ledger.change_withdrawal(2 ** 62, APPROVE, "admin-1")
    assert footprint(alice) == before


def test_the_rolling_daily_limit_counts_open_and_sent_withdrawals(ledger, new_user, fund, footprint):
    user = new_user()
    fund(user, "BTC", 30 * 10 ** 8)
    first = request(ledger, user, 6 * 10 ** 8)
    rejected = request(ledger, user, 3 * 10 ** 8)
    ledger.change_withdrawal(rejected["withdrawal_id"], REJECT, "admin-1")  # does not count
    request(ledger, user, 4 * 10 ** 8)                                        # 10 BTC: the limit
    before = footprint(user)
    with pytest.raises(WithdrawalLimitExceeded):
        request(ledger, user, BTC.min_withdrawal_minor)
    assert footprint(user) == before
    ledger.change_withdrawal(first["withdrawal_id"], CANCEL, user, owner=user)
    assert request(ledger, user, 6 * 10 ** 8)["status"] == "pending"


def test_refused_requests_write_nothing(ledger, alice, new_user, footprint):
    before = footprint(alice)
    with pytest.raises(WithdrawalBelowMinimum):
        request(ledger, alice, BTC.min_withdrawal_minor - 1)
    with pytest.raises(InsufficientFunds):  # 10 BTC is within the limit, but the fee is not covered
        poor = new_user()
        request(ledger, poor, 10 ** 8)
    with pytest.raises(UnknownUser):
        request(ledger, f"ghost-{uuid.uuid4()}")
    assert footprint(alice) == before


def test_no_withdrawal_while_the_registry_has_withdrawals_of_the_asset_disabled(
        ledger, alice, footprint):
    """``withdraw_enabled`` false in the catalogue: before, wallets held the
    amount and opened a pending withdrawal all the same."""
    before = footprint(alice)
    closed = dataclasses.replace(BTC, withdraw_enabled=False)
    with pytest.raises(WithdrawalsDisabled):
        ledger.request_withdrawal(alice, closed, ADDRESS, 10 ** 8, f"w-{uuid.uuid4()}")
    assert footprint(alice) == before


def test_a_repeated_request_returns_the_same_withdrawal(ledger, alice, footprint):
    ref = f"w-{uuid.uuid4()}"
    first = request(ledger, alice, ref=ref)
    before = footprint(alice)
    assert request(ledger, alice, ref=ref) == first
    with pytest.raises(IdempotencyConflict):
        request(ledger, alice, 2 * 10 ** 8, ref=ref)
    assert footprint(alice) == before
