"""settle_trades on the real PostgreSQL: money moves out of locked funds, fees
reach the fee account, a batch is all or nothing, replays change nothing,
concurrent batches on shared accounts do not deadlock."""
import uuid

import eventlet
import pytest

from services.wallets import schemas
from services.wallets.assets import ASSETS
from services.wallets.errors import IdempotencyConflict, InsufficientLocked, UnknownUser

BTC, ETH, USDT = ASSETS["BTC"], ASSETS["ETH"], ASSETS["USDT"]


def trades(*raw):
    return schemas.load_trades(list(raw))


def trade(maker, taker, taker_side="buy", market="BTC-USDT", price="30000.01", quantity="0.5",
          trade_id=None):
    return {"trade_id": trade_id or f"t-{uuid.uuid4().hex}", "market": market, "price": price,
            "quantity": quantity, "taker_side": taker_side, "maker_user_id": maker,
            "taker_user_id": taker}


@pytest.fixture
def traders(ledger, new_user, fund):
    """A seller with 2 BTC locked and a buyer with 100,000 USDT locked."""
    seller, buyer = new_user("seller"), new_user("buyer")
    fund(seller, "BTC", 2 * 10 ** 8)
    ledger.hold(seller, BTC, 2 * 10 ** 8, f"sell:{seller}")
    fund(buyer, "USDT", 100_000 * 10 ** 6)
    ledger.hold(buyer, USDT, 100_000 * 10 ** 6, f"buy:{buyer}")
    return seller, buyer


def fee_revenue(db, asset):
    return db.execute("SELECT available FROM wallets.accounts WHERE owner = 'system:fee_revenue' "
                      "AND asset = %s", (asset,)).fetchone()[0]


def test_a_trade_moves_base_and_quote_and_charges_both_fees(ledger, traders, db):
    seller, buyer = traders
    fees_btc, fees_usdt = fee_revenue(db, "BTC"), fee_revenue(db, "USDT")
    (result,) = ledger.settle_trades(trades(trade(seller, buyer)))
    assert result["maker_fee"] == {"asset": "USDT", "amount": "15.000005"}
    assert result["taker_fee"] == {"asset": "BTC", "amount": "0.00100000"}
    assert ledger.balance(seller, BTC) == {"user": seller, "asset": "BTC",
                                           "available": "0.00000000", "locked": "1.50000000"}
    assert ledger.balance(seller, USDT)["available"] == "14985.004995"
    assert ledger.balance(buyer, BTC)["available"] == "0.49900000"
    assert ledger.balance(buyer, USDT)["locked"] == "84999.995000"
    assert fee_revenue(db, "BTC") - fees_btc == 100_000
    assert fee_revenue(db, "USDT") - fees_usdt == 15_000_005


def test_a_settled_batch_is_one_balances_changed_naming_its_user_accounts(ledger, traders, db):
    """The balance trigger announces what its UPDATE moved: one outbox row per
    settlement statement, every user account of the batch once, ordered by
    user then asset, no system account (the fee revenue moved too)."""
    seller, buyer = traders
    since = db.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0]
    ledger.settle_trades(trades(trade(seller, buyer), trade(buyer, seller, taker_side="sell")))
    announced = [payload for (payload,) in db.execute(
        "SELECT payload FROM outbox WHERE stream = 'wallets' AND routing_key = 'balances_changed' "
        "AND id > %s ORDER BY id", (since,)).fetchall()
        if {change["user"] for change in payload["changes"]} & {seller, buyer}]
    assert announced == [{"event_version": 1, "changes": sorted(
        [{"user": user, "asset": asset} for user in (seller, buyer) for asset in ("BTC", "USDT")],
        key=lambda change: (change["user"], change["asset"]))}]


def test_a_fee_tier_overrides_the_market_schedule(ledger, traders):
    seller, buyer = traders
    ledger.set_fee_tier(buyer, "vip1")  # taker 0.09 %
    (result,) = ledger.settle_trades(trades(trade(seller, buyer, quantity="1")))
    assert result["taker_fee"] == {"asset": "BTC", "amount": "0.00090000"}
    ledger.set_fee_tier(buyer, None)
    (result,) = ledger.settle_trades(trades(trade(seller, buyer, quantity="0.5")))
    assert result["taker_fee"] == {"asset": "BTC", "amount": "0.00100000"}


def test_trade_fees_are_what_each_trade_charged_its_user(ledger, traders):
    """What the gateway shows as Binance's commissions: per trade, the fee of
    the user's own role as charged then (a tier set later changes only the
    rates), both roles in a self-trade, nothing of trades not settled or not
    theirs; ``rates`` are the user's tier's or the market's."""
    seller, buyer = traders
    ledger.set_fee_tier(buyer, "vip1")  # taker 0.09 %, maker 0.08 %
    first, second, own = (trade(seller, buyer, quantity="1"),
                          trade(buyer, seller, taker_side="sell", quantity="0.5"),
                          trade(buyer, buyer, quantity="0.1"))
    ledger.settle_trades(trades(first, second))
    ledger.hold(buyer, BTC, 10 ** 7, f"self:{buyer}")  # the self-trade sells 0.1 BTC of the buyer's
    ledger.settle_trades(trades(own))
    ledger.set_fee_tier(buyer, "market_maker")
    ids = [first["trade_id"], second["trade_id"], own["trade_id"], "t-not-settled"]
    assert ledger.trade_fees(buyer, schemas.load_market("BTC-USDT"), ids) == {
        "rates": {"maker": "0", "taker": "0.0005"},
        "fees": {first["trade_id"]: {"taker": {"asset": "BTC", "amount": "0.00090000"}},
                 second["trade_id"]: {"maker": {"asset": "BTC", "amount": "0.00040000"}},
                 own["trade_id"]: {"maker": {"asset": "USDT", "amount": "2.400000"},
                                   "taker": {"asset": "BTC", "amount": "0.00009000"}}}}
    assert ledger.trade_fees(seller, schemas.load_market("BTC-USDT"), ids) == {
        "rates": {"maker": "0.001", "taker": "0.002"},
        "fees": {first["trade_id"]: {"maker": {"asset": "USDT", "amount": "30.000010"}},
                 second["trade_id"]: {"taker": {"asset": "USDT", "amount": "30.000010"}}}}
    assert ledger.trade_fees(seller, schemas.load_market("BTC-USDT"), []) == {
        "rates": {"maker": "0.001", "taker": "0.002"}, "fees": {}}
    tiered, scheduled = ledger.fee_rates(buyer), ledger.fee_rates(seller)
    assert tiered["tier"] == "market_maker" and scheduled["tier"] is None
    assert set(tiered["rates"]) == set(scheduled["rates"]) >= {"BTC-USDT", "ETH-USDT"}
    assert all(rates == {"maker": "0", "taker": "0.0005"} for rates in tiered["rates"].values())
    assert scheduled["rates"]["BTC-USDT"] == {"maker": "0.001", "taker": "0.002"}
    ledger.set_fee_tier(buyer, None)


def test_replaying_a_batch_returns_the_original_results_and_changes_nothing(ledger, traders, footprint, db):
    seller, buyer = traders
    batch = trades(*(trade(seller, buyer, quantity="0.01") for _ in range(20)))
    first = ledger.settle_trades(batch)
    before = (footprint(seller), footprint(buyer), fee_revenue(db, "BTC"), fee_revenue(db, "USDT"))
    assert ledger.settle_trades(batch) == first
    assert (footprint(seller), footprint(buyer), fee_revenue(db, "BTC"), fee_revenue(db, "USDT")) == before
    # a batch mixing settled and new trades settles only the new ones
    mixed = ledger.settle_trades(batch[:5] + trades(trade(seller, buyer, quantity="0.02")))
    assert mixed[:5] == first[:5]
    assert ledger.balance(buyer, BTC)["available"] == "0.21956000"  # 0.22 BTC less the 0.2 % taker fee


def test_a_trade_id_reused_with_other_content_is_a_conflict(ledger, traders, footprint):
    seller, buyer = traders
    first = trade(seller, buyer)
    ledger.settle_trades(trades(first))
    before = footprint(seller), footprint(buyer)
    with pytest.raises(IdempotencyConflict):
        ledger.settle_trades(trades({**first, "quantity": "0.6"}))
    with pytest.raises(IdempotencyConflict):  # within one batch too
        ledger.settle_trades(trades(trade(seller, buyer, trade_id="dup-" + seller),
                                    trade(seller, buyer, trade_id="dup-" + seller, quantity="0.1")))
    assert (footprint(seller), footprint(buyer)) == before


def test_the_same_trade_id_in_two_markets_is_two_trades(ledger, new_user, fund):
    seller, buyer = new_user(), new_user()
    for user, asset, amount in ((seller, "BTC", 10 ** 8), (seller, "ETH", 10 ** 18),
                                (buyer, "USDT", 10 ** 11)):
        fund(user, asset, amount)
        ledger.hold(user, ASSETS[asset], amount, f"h:{user}:{asset}")
    shared = f"17-{uuid.uuid4().hex[:8]}"
    results = ledger.settle_trades(trades(
        trade(seller, buyer, trade_id=shared, quantity="0.1"),
        trade(seller, buyer, market="ETH-USDT", price="2000", trade_id=shared, quantity="0.1")))
    assert results[0]["transaction_id"] != results[1]["transaction_id"]


def test_a_batch_with_one_unfunded_trade_writes_nothing(ledger, traders, new_user, footprint):
    seller, buyer = traders
    broke = new_user("broke")
    before = footprint(seller), footprint(buyer), footprint(broke)
    batch = trades(trade(seller, buyer, quantity="0.1"), trade(seller, buyer, quantity="0.1"),
                   trade(broke, buyer, quantity="0.1"))
    with pytest.raises(InsufficientLocked) as raised:
        ledger.settle_trades(batch)
    assert f"trade:BTC-USDT:{batch[2].trade_id}" in str(raised.value)
    # more than the seller's locked BTC in total: refused as well
    with pytest.raises(InsufficientLocked):
        ledger.settle_trades(trades(trade(seller, buyer, quantity="1.5"), trade(seller, buyer, quantity="0.6")))
    assert (footprint(seller), footprint(buyer), footprint(broke)) == before


def test_a_trade_with_an_unknown_user_writes_nothing(ledger, traders, footprint):
    seller, buyer = traders
    before = footprint(seller), footprint(buyer)
    with pytest.raises(UnknownUser):
        ledger.settle_trades(trades(trade(seller, buyer), trade(seller, f"ghost-{uuid.uuid4()}")))
    assert (footprint(seller), footprint(buyer)) == before


def test_concurrent_batches_over_the_same_accounts_do_not_deadlock(ledger, new_user, fund):
    """Two settlers, one per market, whose batches share every user's USDT
    account and the USDT fee account, listing the users in opposite orders."""
    users = [new_user() for _ in range(6)]
    for user in users:
        for asset, amount in (("BTC", 10 ** 8), ("ETH", 10 ** 18), ("USDT", 10 ** 11)):
            fund(user, asset, amount)
            ledger.hold(user, ASSETS[asset], amount, f"h:{user}:{asset}")

    def settler(market, order):
        for _ in range(5):
            batch = [trade(a, b, market=market, price="1000", quantity="0.001",
                           taker_side="buy" if i % 2 else "sell")
                     for i, (a, b) in enumerate(zip(order, order[1:] + order[:1]))]
            ledger.settle_trades(trades(*batch))
        return market

    pool = eventlet.GreenPool(4)
    done = [pool.spawn(settler, "BTC-USDT", users), pool.spawn(settler, "ETH-USDT", users[::-1]),
            pool.spawn(settler, "BTC-USDT", users[::-1]), pool.spawn(settler, "ETH-USDT", users)]
    with eventlet.Timeout(60):
        assert sorted(thread.wait() for thread in done) == ["BTC-USDT", "BTC-USDT", "ETH-USDT", "ETH-USDT"]
    total_usdt = sum(int(ledger.balance(u, USDT)["available"].replace(".", ""))
                     + int(ledger.balance(u, USDT)["locked"].replace(".", "")) for u in users)
    assert total_usdt < 6 * 10 ** 11  # fees left the users; the audit checks where they went
