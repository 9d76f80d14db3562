"""TradeSettlement.handle on the real PostgreSQL (no broker: the consumer loop
is services.common's): a message batch larger than a ledger batch settles as
several pipelined ledger batches; a refused trade in one of them is parked and
every other trade, before and after it, is settled once."""
import uuid

from services.wallets.assets import ASSETS
from services.wallets.settlement import TradeSettlement

BTC, USDT = ASSETS["BTC"], ASSETS["USDT"]


def test_a_refused_trade_in_the_middle_batch_is_parked_and_the_rest_settle(
        ledger, wallets_pool, new_user, fund, db):
    seller, buyer, broke = new_user("h-seller"), new_user("h-buyer"), new_user("h-broke")
    fund(seller, "BTC", 10 ** 8)
    ledger.hold(seller, BTC, 10 ** 8, f"sell:{seller}")
    fund(buyer, "USDT", 100_000 * 10 ** 6)
    ledger.hold(buyer, USDT, 100_000 * 10 ** 6, f"buy:{buyer}")
    tag = uuid.uuid4().hex[:8]
    bodies = [{"market": "BTC-USDT", "seq": i + 1, "trade_id": f"h-{tag}-{i}", "price": "100",
               "quantity": "0.001", "quote_quantity": "0.1", "taker_side": "buy",
               "maker_order_id": 1, "maker_user_id": seller, "taker_order_id": 2,
               "taker_user_id": buyer, "executed_at": 1796400000000} for i in range(25)]
    bodies[12]["maker_user_id"] = broke  # nothing locked: refused
    settlement = TradeSettlement.__new__(TradeSettlement)
    settlement.pool, settlement.ledger, settlement.ledger_batch = wallets_pool, ledger, 10
    try:
        settlement.handle([("trade_executed", body["trade_id"], body) for body in bodies])
        settlement.handle([("trade_executed", body["trade_id"], body) for body in bodies])  # redelivered
        assert ledger.balance(seller, BTC)["locked"] == "0.97600000"  # 24 x 0.001 BTC, once
        parked = db.execute("SELECT trade_id FROM wallets.unsettled_trades WHERE trade_id LIKE %s",
                            (f"h-{tag}-%",)).fetchall()
        assert parked == [(f"h-{tag}-12",)]
    finally:
        db.execute("DELETE FROM wallets.unsettled_trades WHERE trade_id LIKE %s", (f"h-{tag}-%",))
