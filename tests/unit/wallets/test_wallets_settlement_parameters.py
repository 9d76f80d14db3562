"""The settlement statement's delimited parameters carry every entry and
posting exactly, and no key or details document can contain a delimiter."""
import json

from services.wallets import schemas
from services.wallets.ledger import Account, FEE_REVENUE, settle_trade, system_owner
from services.wallets.trades import _settlement_parameters


def entries_for(raw_trades):
    trades = schemas.load_trades(raw_trades)
    owners = {t["maker_user_id"] for t in raw_trades} | {t["taker_user_id"] for t in raw_trades}
    accounts, next_id = {}, 1
    for owner in sorted(owners) + [system_owner(FEE_REVENUE)]:
        for asset in ("BTC", "ETH", "USDT"):
            accounts[(owner, asset)] = Account(next_id, owner, "", asset, 0, 0)
            next_id += 1
    return [settle_trade(trade, accounts, {}) for trade in trades]


def test_parameters_round_trip_every_entry_and_posting():
    entries = entries_for([
        {"trade_id": f"t-{i}", "market": "BTC-USDT" if i % 2 else "ETH-USDT", "price": "30000.5",
         "quantity": "0.0123", "taker_side": "buy" if i % 3 else "sell", "maker_user_id": "m.aker",
         "taker_user_id": "tak_er-1"} for i in range(5)])
    keys, details, ordinals, accounts, buckets, assets, amounts = _settlement_parameters(entries)
    assert keys.split("\x1e") == [e.key for e in entries]
    assert [json.loads(d) for d in details.split("\x1e")] == [e.details for e in entries]
    postings = list(zip(ordinals.split(","), accounts.split(","), buckets.split(","),
                        assets.split(","), amounts.split(",")))
    assert postings == [(str(n), str(p.account_id), p.bucket, p.asset, str(p.amount))
                        for n, e in enumerate(entries, 1) for p in e.postings]


def test_a_control_character_in_details_is_escaped_not_a_delimiter():
    (entry,) = entries_for([{"trade_id": "t-1", "market": "BTC-USDT", "price": "30000",
                             "quantity": "0.01", "taker_side": "buy", "maker_user_id": "a",
                             "taker_user_id": "b"}])
    entry.details["note"] = "x\x1ey,z"  # not something settle_trade writes; the encoder's guarantee
    _, details, *_ = _settlement_parameters([entry, entry])
    assert len(details.split("\x1e")) == 2
    assert json.loads(details.split("\x1e")[0])["note"] == "x\x1ey,z"
