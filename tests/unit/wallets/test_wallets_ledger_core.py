"""The pure ledger core: entries balance, trades settle and charge fees exactly,
balances are refused below zero, what each withdrawal action asks for."""
import pytest
from hypothesis import given, strategies as st

from services.wallets import schemas
from services.wallets.assets import ASSETS, FEE_TIERS, MARKETS
from services.wallets.errors import (
    IdempotencyConflict,
    InsufficientFunds,
    InsufficientLocked,
    WithdrawalBelowMinimum,
    WithdrawalLimitExceeded,
    WithdrawalsDisabled,
)
from services.wallets.ledger import (
    APPROVE,
    APPROVED,
    AVAILABLE,
    CANCEL,
    CANCELLED,
    DEPOSITS_CLEARING,
    FEE_REVENUE,
    LOCKED,
    MARK_SENT,
    PENDING,
    REJECT,
    REJECTED,
    SENT,
    USER,
    WITHDRAWAL_STATUSES,
    WITHDRAWALS_CLEARING,
    Account,
    LedgerBug,
    Posting,
    Trade,
    Withdrawal,
    WorkingBalances,
    check_replay,
    check_withdrawal_request,
    fee_amount,
    history_entry,
    journal_entry,
    quote_amount,
    settle_trade,
    system_owner,
    withdrawal_entries,
    withdrawal_step,
)

BTC, USDT = ASSETS["BTC"], ASSETS["USDT"]
FEE = system_owner(FEE_REVENUE)


def accounts_for(*users, balance=10 ** 30):
    accounts, next_id = {}, 1
    for owner in (*users, FEE, system_owner(WITHDRAWALS_CLEARING), system_owner(DEPOSITS_CLEARING)):
        for asset in sorted(ASSETS):
            kind = USER if not owner.startswith("system:") else owner.split(":", 1)[1]
            funded = balance if kind == USER else 0
            accounts[(owner, asset)] = Account(next_id, owner, kind, asset, funded, funded)
            next_id += 1
    return accounts


def sums_per_asset(entry):
    totals = {}
    for posting in entry.postings:
        totals[posting.asset] = totals.get(posting.asset, 0) + posting.amount
    return totals


def balance_change(entry, account, bucket):
    return sum(p.amount for p in entry.postings if p.account_id == account.id and p.bucket == bucket)


# ---------------------------------------------------------------- entries


def test_journal_entry_merges_postings_and_refuses_imbalance():
    entry = journal_entry("k", "adjustment", [
        Posting(1, "BTC", AVAILABLE, 5), Posting(1, "BTC", AVAILABLE, 5), Posting(2, "BTC", AVAILABLE, -10),
    ], {})
    assert sorted(entry.postings) == [Posting(1, "BTC", AVAILABLE, 10), Posting(2, "BTC", AVAILABLE, -10)]
    with pytest.raises(LedgerBug):
        journal_entry("k", "adjustment", [Posting(1, "BTC", AVAILABLE, 5), Posting(2, "BTC", AVAILABLE, -4)], {})
    with pytest.raises(LedgerBug):  # balances in total but not per asset
        journal_entry("k", "adjustment", [Posting(1, "BTC", AVAILABLE, 5), Posting(2, "ETH", AVAILABLE, -5)], {})
    with pytest.raises(LedgerBug):  # nothing left after merging
        journal_entry("k", "adjustment", [Posting(1, "BTC", AVAILABLE, 5), Posting(1, "BTC", AVAILABLE, -5)], {})


def moved(account, amount, ref, source=AVAILABLE, target=LOCKED):
    """A hold (available -> locked) or, swapped, a release of one account."""
    return journal_entry(f"move:{ref}", "hold", (
        Posting(account.id, account.asset, source, -amount),
        Posting(account.id, account.asset, target, amount)), {})


def test_working_balances_refuse_an_overdraft_and_keep_the_balances():
    account = Account(7, "alice", USER, "BTC", 100, 10)
    balances = WorkingBalances([account])
    balances.apply(moved(account, 60, "a"), "hold a")
    with pytest.raises(InsufficientFunds) as raised:
        balances.apply(moved(account, 41, "b"), "hold b")
    assert "alice has 0.00000040 BTC available, needs 0.00000041" in str(raised.value)
    balances.apply(moved(account, 40, "c"), "hold c")  # the refused one left nothing behind
    assert balances.available[7] == 0 and balances.locked[7] == 110
    with pytest.raises(InsufficientLocked):
        balances.apply(moved(account, 111, "d", LOCKED, AVAILABLE), "release d")


def test_replay_with_other_content_is_a_conflict():
    check_replay("hold:x", {"amount": "1", "user": "a"}, {"amount": "1", "user": "a"}, ("amount", "user"))
    with pytest.raises(IdempotencyConflict):
        check_replay("hold:x", {"amount": "1", "user": "a"}, {"amount": "2", "user": "a"}, ("amount", "user"))


# ---------------------------------------------------------------- trades


def trade(**overrides):
    raw = {"trade_id": 17, "market": "BTC-USDT", "price": "30000.01", "quantity": "0.5",
           "taker_side": "buy", "maker_user_id": "maker", "taker_user_id": "taker"}
    raw.update(overrides)
    return schemas.load_trade(raw)


def test_a_trade_moves_locked_funds_and_charges_each_side_on_what_it_receives():
    accounts = accounts_for("maker", "taker")
    entry = settle_trade(trade(), accounts, {})
    maker_btc, maker_usdt = accounts[("maker", "BTC")], accounts[("maker", "USDT")]
    taker_btc, taker_usdt = accounts[("taker", "BTC")], accounts[("taker", "USDT")]
    # the taker buys 0.5 BTC for 15000.005 USDT; taker fee 0.2 % of 0.5 BTC, maker fee 0.1 % of the USDT
    assert balance_change(entry, maker_btc, LOCKED) == -50_000_000
    assert balance_change(entry, taker_btc, AVAILABLE) == 50_000_000 - 100_000
    assert balance_change(entry, taker_usdt, LOCKED) == -15_000_005_000
    assert balance_change(entry, maker_usdt, AVAILABLE) == 15_000_005_000 - 15_000_005
    assert balance_change(entry, accounts[(FEE, "BTC")], AVAILABLE) == 100_000
    assert balance_change(entry, accounts[(FEE, "USDT")], AVAILABLE) == 15_000_005
    assert entry.details["maker_fee"] == {"asset": "USDT", "amount": "15.000005"}
    assert entry.details["taker_fee"] == {"asset": "BTC", "amount": "0.00100000"}
    assert sums_per_asset(entry) == {"BTC": 0, "USDT": 0}


def test_a_tier_overrides_the_market_schedule_for_that_user_only():
    accounts = accounts_for("maker", "taker")
    entry = settle_trade(trade(taker_side="sell"), accounts, {"maker": "market_maker"})
    # the taker sells: the maker buys BTC at maker rate 0 (tier), the taker pays the market's 0.2 %
    assert entry.details["maker_fee"] == {"asset": "BTC", "amount": "0.00000000"}
    assert entry.details["taker_fee"] == {"asset": "USDT", "amount": "30.000010"}
    assert FEE_TIERS["market_maker"].maker == "0"


def test_a_self_trade_settles_within_one_users_accounts():
    accounts = accounts_for("same")
    entry = settle_trade(trade(maker_user_id="same", taker_user_id="same"), accounts, {})
    assert sums_per_asset(entry) == {"BTC": 0, "USDT": 0}
    assert balance_change(entry, accounts[("same", "BTC")], LOCKED) == -50_000_000


def test_fees_round_down_to_a_whole_minor_unit():
    assert fee_amount(999, (1, 1000)) == 0
    assert fee_amount(1000, (1, 1000)) == 1
    assert fee_amount(15_000_005_000, (1, 1000)) == 15_000_005


def test_a_quote_amount_off_the_quote_grid_is_refused_not_rounded():
    market = MARKETS["BTC-USDT"]
    assert quote_amount(market, (3000001, 100), 50_000_000) == 15_000_005_000
    assert quote_amount(market, (3000001, 100), 1) is None  # 0.0000000030000001 USDT


@given(
    price_cents=st.integers(1, 10 ** 9),
    lots=st.integers(1, 10 ** 7),
    taker_buys=st.booleans(),
    maker_tier=st.sampled_from([None, *sorted(FEE_TIERS)]),
    taker_tier=st.sampled_from([None, *sorted(FEE_TIERS)]),
    # The seed's markets: the process's catalogue also holds whatever other
    # tests of this run listed (other quotes, other grids), which the
    # assertions below (USDT received, four-decimal lots) do not describe.
    market=st.sampled_from(["BTC-USDT", "ETH-USDT"]),
)
def test_every_settlement_balances_and_fees_never_exceed_what_is_received(
        price_cents, lots, taker_buys, maker_tier, taker_tier, market):
    base = ASSETS[MARKETS[market].base]
    quantity = f"{lots // 10_000}.{lots % 10_000:04d}"
    price = f"{price_cents // 100}.{price_cents % 100:02d}"
    t = trade(market=market, price=price, quantity=quantity, taker_side="buy" if taker_buys else "sell")
    accounts = accounts_for("maker", "taker")
    tiers = {user: tier for user, tier in (("maker", maker_tier), ("taker", taker_tier)) if tier}
    entry = settle_trade(t, accounts, tiers)
    assert set(sums_per_asset(entry).values()) == {0}
    buyer = "taker" if taker_buys else "maker"
    seller = "maker" if taker_buys else "taker"
    received_base = balance_change(entry, accounts[(buyer, base.code)], AVAILABLE)
    received_quote = balance_change(entry, accounts[(seller, "USDT")], AVAILABLE)
    assert 0 <= t.base_amount - received_base <= t.base_amount // 10
    assert 0 <= t.quote_amount - received_quote <= t.quote_amount // 10
    assert t.base_amount == lots * 10 ** (base.scale - 4)


# ---------------------------------------------------------------- withdrawals


def withdrawal(status, txid=None, fee=20_000):
    return Withdrawal(9, "alice", "BTC", 7, "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", 100_000, fee,
                      status, txid, "t0", "t0")


TARGETS = {APPROVE: APPROVED, REJECT: REJECTED, CANCEL: CANCELLED, MARK_SENT: SENT}


@pytest.mark.parametrize("action", [APPROVE, REJECT, CANCEL, MARK_SENT])
@pytest.mark.parametrize("status", WITHDRAWAL_STATUSES)
def test_an_action_asks_for_its_status_unless_it_is_there_already(action, status):
    """Whether the step is legal is the database's rule (the state machine's
    trigger; tests/integration/wallets/test_wallets_withdrawals.py)."""
    current = withdrawal(status, txid="ab" * 32 if status == SENT else None)
    expected = None if status == TARGETS[action] else TARGETS[action]
    assert withdrawal_step(current, action, "ab" * 32) == expected


def test_marking_sent_again_with_another_txid_asks_the_database():
    assert withdrawal_step(withdrawal(SENT, txid="ab" * 32), MARK_SENT, "cd" * 32) == SENT


def test_withdrawal_entries_release_or_pay_out_plus_fee():
    accounts = accounts_for("alice")
    user = accounts[("alice", "BTC")]
    (release,) = withdrawal_entries(withdrawal(REJECTED), REJECTED, accounts)
    assert balance_change(release, user, LOCKED) == -120_000
    assert balance_change(release, user, AVAILABLE) == 120_000
    sent, fee = withdrawal_entries(withdrawal(SENT, txid="ab" * 32), SENT, accounts)
    assert balance_change(sent, accounts[(system_owner(WITHDRAWALS_CLEARING), "BTC")], AVAILABLE) == 100_000
    assert balance_change(fee, accounts[(FEE, "BTC")], AVAILABLE) == 20_000
    assert balance_change(sent, user, LOCKED) + balance_change(fee, user, LOCKED) == -120_000
    assert len(withdrawal_entries(withdrawal(SENT, txid="ab" * 32, fee=0), SENT, accounts)) == 1


def test_withdrawal_requests_respect_minimum_and_daily_limit():
    assert check_withdrawal_request(BTC, BTC.min_withdrawal_minor, 0) == BTC.withdrawal_fee_minor
    with pytest.raises(WithdrawalBelowMinimum):
        check_withdrawal_request(BTC, BTC.min_withdrawal_minor - 1, 0)
    limit = BTC.daily_withdrawal_limit_minor
    assert check_withdrawal_request(BTC, 1_000_000, limit - 1_000_000)
    with pytest.raises(WithdrawalLimitExceeded):
        check_withdrawal_request(BTC, 1_000_000, limit - 999_999)


def test_no_withdrawal_of_an_asset_whose_withdrawals_the_registry_disabled():
    """The registry's ``withdraw_enabled`` false was published and shown by
    the web client, but wallets held and opened the withdrawal all the same."""
    import dataclasses
    closed = dataclasses.replace(BTC, withdraw_enabled=False)
    with pytest.raises(WithdrawalsDisabled) as caught:
        check_withdrawal_request(closed, BTC.min_withdrawal_minor, 0)
    assert caught.value.code == "WITHDRAWALS_DISABLED"


# ---------------------------------------------------------------- history


def test_a_trade_line_shows_the_users_side_role_and_fee_but_no_counterparty():
    accounts = accounts_for("alice", "bob")
    entry = settle_trade(trade(maker_user_id="alice", taker_user_id="bob"), accounts, {})
    line = history_entry("bob", BTC, 5, "trade", "t", entry.details, 49_900_000, 0)
    assert line["details"]["side"] == "buy" and line["details"]["role"] == "taker"
    assert line["details"]["fee"] == "0.00100000"
    assert line["available_delta"] == "0.49900000"
    maker_line = history_entry("alice", BTC, 5, "trade", "t", entry.details, 0, -50_000_000)
    assert maker_line["details"]["side"] == "sell" and maker_line["details"]["role"] == "maker"
    assert maker_line["details"]["fee"] == "0.00000000"  # alice pays hers in USDT
    assert "alice" not in str(line) and "bob" not in str(maker_line)
