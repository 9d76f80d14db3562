"""The settlement consumer on real RabbitMQ and PostgreSQL: a trade the ledger
refuses is parked (and reported by audit) while the rest of the batch settles."""
import time
import uuid

import psycopg
from kombu import Connection
from nameko.standalone.events import event_dispatcher
from nameko.standalone.rpc import ClusterRpcProxy

from services.common.outbox import command_queue
from services.wallets.service import WalletsService


def test_a_refused_trade_is_parked_and_the_others_settle(container_factory, nameko_config,
                                                          test_settings):
    # The settlement queue is durable: drop what earlier tests left (their
    # throwaway markets' trades) so this test does not wait behind them.
    with Connection(nameko_config["AMQP_URI"]) as amqp:
        queue = command_queue("wallets.settlement")(amqp.default_channel)
        queue.declare()
        queue.purge()
    container_factory(WalletsService, nameko_config).start()
    dispatch = event_dispatcher(nameko_config)
    with ClusterRpcProxy(nameko_config, timeout=30) as rpc:
        users = []
        for assets in ({"BTC": "1"}, {"USDT": "1000"}):
            user = f"settle-{uuid.uuid4().hex[:10]}"
            rpc.wallets.open_accounts(user)
            for asset, amount in assets.items():
                address = rpc.wallets.deposit_address(user, asset)["address"]
                txid = uuid.uuid4().hex * 2
                rpc.wallets.credit_deposit(asset, address, amount,
                                           txid if asset == "BTC" else "0x" + txid, 1000)
            users.append(user)
        seller, buyer = users
        rpc.wallets.hold(seller, "BTC", "0.1", f"test:{uuid.uuid4().hex}")
        rpc.wallets.hold(buyer, "USDT", "10", f"test:{uuid.uuid4().hex}")
        tag = uuid.uuid4().hex[:8]
        good = {"market": "BTC-USDT", "seq": 1, "trade_id": f"BTC-USDT-ok-{tag}", "price": "100",
                "quantity": "0.1", "quote_quantity": "10", "taker_side": "buy",
                "maker_order_id": 1, "maker_user_id": seller, "taker_order_id": 2,
                "taker_user_id": buyer, "executed_at": 1796400000000}
        short = {**good, "trade_id": f"BTC-USDT-short-{tag}", "quantity": "0.5",
                 "quote_quantity": "50"}  # not held
        dispatch("matching", "trade_executed", short)
        dispatch("matching", "trade_executed", good)
        deadline = time.monotonic() + 20
        while rpc.wallets.balance(buyer, "BTC")["available"] == "0.00000000":
            assert time.monotonic() < deadline, "the good trade was not settled"
            time.sleep(0.1)
        findings = [f for f in rpc.wallets.audit() if short["trade_id"] in f["detail"]]
        assert [f["check"] for f in findings] == ["trade_not_settled"]
    with psycopg.connect(test_settings.postgres_dsn()) as conn:
        conn.execute("DELETE FROM wallets.unsettled_trades WHERE trade_id = %s",
                     (short["trade_id"],))
