"""Deposits on the real PostgreSQL: one address per (user, asset), credited once
per txid and only after the asset's required confirmations."""
import dataclasses
import uuid

import eventlet
import pytest

from services.wallets.addresses import normalize_address
from services.wallets.assets import ASSETS
from services.wallets.errors import (DepositsDisabled, IdempotencyConflict, UnknownAddress,
                                     UnknownUser, WalletsError)

BTC, ETH, USDT = ASSETS["BTC"], ASSETS["ETH"], ASSETS["USDT"]


def test_each_user_has_one_valid_address_per_asset(ledger, new_user):
    alice, bob = new_user(), new_user()
    addresses = {}
    for asset in (BTC, ETH, USDT):
        first = ledger.deposit_address(alice, asset)
        assert ledger.deposit_address(alice, asset) == first
        assert normalize_address(asset, first["address"]) == first["address"]
        addresses[asset.code] = first["address"]
        assert ledger.deposit_address(bob, asset)["address"] != first["address"]
    assert addresses["BTC"].startswith("bc1q") and addresses["ETH"].startswith("0x")


def test_concurrent_requests_for_an_address_agree(ledger, new_user):
    user = new_user()
    seen = set(eventlet.GreenPool(10).imap(lambda _: ledger.deposit_address(user, ETH)["address"],
                                           range(10)))
    assert len(seen) == 1


def test_a_user_without_accounts_gets_no_address(ledger, db):
    stranger = f"nobody-{uuid.uuid4()}"
    with pytest.raises(UnknownUser):
        ledger.deposit_address(stranger, BTC)
    assert db.execute("SELECT count(*) FROM wallets.deposit_addresses WHERE user_id = %s",
                      (stranger,)).fetchone()[0] == 0


def test_a_deposit_is_credited_once_it_has_the_required_confirmations(ledger, new_user, footprint, new_txid):
    user = new_user()
    address = ledger.deposit_address(user, BTC)["address"]
    txid = new_txid("BTC")
    before = footprint(user)
    for confirmations in range(BTC.confirmations):
        waiting = ledger.credit_deposit(BTC, address, 50_000_000, txid, confirmations)
        assert waiting["status"] == "awaiting_confirmations" and waiting["required"] == 3
        assert footprint(user) == before
    credited = ledger.credit_deposit(BTC, address, 50_000_000, txid, BTC.confirmations)
    assert credited["status"] == "credited" and credited["user"] == user
    assert ledger.balance(user, BTC)["available"] == "0.50000000"
    after = footprint(user)
    # the chain watcher reports the same deposit again, with more confirmations
    assert ledger.credit_deposit(BTC, address, 50_000_000, txid, 10) == credited
    assert ledger.credit_deposit(BTC, address, 50_000_000, txid, 0) == credited
    assert footprint(user) == after


def test_a_txid_reported_with_another_amount_is_a_conflict(ledger, new_user, footprint, new_txid):
    user = new_user()
    address = ledger.deposit_address(user, USDT)["address"]
    txid = new_txid("USDT")
    ledger.credit_deposit(USDT, address, 10 ** 6, txid, 12)
    before = footprint(user)
    with pytest.raises(IdempotencyConflict):
        ledger.credit_deposit(USDT, address, 2 * 10 ** 6, txid, 12)
    assert footprint(user) == before


def test_a_deposit_to_an_address_nobody_owns_is_refused(ledger, new_txid):
    with pytest.raises(UnknownAddress):
        ledger.credit_deposit(ETH, "0x" + "12" * 20, 10 ** 18, new_txid("ETH"), 12)


def test_concurrent_reports_of_one_deposit_credit_it_once(ledger, new_user, new_txid):
    user = new_user()
    address = ledger.deposit_address(user, ETH)["address"]
    txid = new_txid("ETH")

    def report(_):
        try:
            return ledger.credit_deposit(ETH, address, 10 ** 18, txid, 12)["transaction_id"]
        except WalletsError as exc:
            return exc.code

    assert len(set(eventlet.GreenPool(8).imap(report, range(8)))) == 1
    assert ledger.balance(user, ETH)["available"] == "1.000000000000000000"


def test_no_deposit_address_while_the_registry_has_deposits_of_the_asset_disabled(ledger, new_user,
                                                                                  db):
    """``deposit_enabled`` false in the catalogue (a chain under maintenance):
    before, wallets handed out an address all the same, new or known."""
    closed = dataclasses.replace(ETH, deposit_enabled=False)
    known, fresh = new_user(), new_user()
    ledger.deposit_address(known, ETH)
    for user in (known, fresh):
        with pytest.raises(DepositsDisabled):
            ledger.deposit_address(user, closed)
    assert db.execute("SELECT count(*) FROM wallets.deposit_addresses WHERE user_id = %s",
                      (fresh,)).fetchone()[0] == 0


def test_a_deposit_arriving_while_deposits_are_disabled_is_still_credited(ledger, new_user,
                                                                          new_txid):
    """The coins are on the exchange's address and belong to the trader:
    disabling deposits stops handing out addresses, not crediting."""
    user = new_user()
    address = ledger.deposit_address(user, USDT)["address"]
    closed = dataclasses.replace(USDT, deposit_enabled=False)
    credited = ledger.credit_deposit(closed, address, 10 ** 6, new_txid("USDT"), 12)
    assert credited["status"] == "credited" and credited["user"] == user
    assert ledger.balance(user, USDT)["available"] == "1.000000"
