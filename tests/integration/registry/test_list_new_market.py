"""Issue 12's "done when": on a running exchange, with no code change and no
restart, an operator lists two new assets and a market between them with the
CLI; two users deposit, trade it, and both balances settle; the trade and its
candle show in marketdata; the ledger audit is clean.

The services run as containers on the test vhost and database, started
before the listing; the CLI runs as its own process, as an operator would run
it, with the test namespace in its environment."""
import json
import os
import sys
import uuid
from decimal import Decimal

import pytest
from eventlet.green import subprocess
from kombu import Connection
from nameko.standalone.rpc import ClusterRpcProxy

from services.common.config import REPO_ROOT
from services.common.outbox import command_queue
from services.marketdata.service import MarketDataService
from services.matching.service import MatchingService
from services.orders.service import OrdersService
from services.registry.service import RegistryService
from services.wallets.service import WalletsService
from tests.integration.orders.conftest import wait_for
from tests.integration.registry.conftest import PASSWORD


def cli(settings, admin, *args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "EXCHANGE_CLI_PASSWORD": PASSWORD,
           "EXCHANGE_POSTGRES_DB": settings["EXCHANGE_POSTGRES_DB"],
           "EXCHANGE_RABBITMQ_VHOST": settings["EXCHANGE_RABBITMQ_VHOST"]}
    done = subprocess.run([sys.executable, "-m", "services.registry.cli", *args, "--admin", admin],
                          env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.fixture
def marketdata_name(nameko_config):
    """marketdata under a name and trade queue of its own (the test vhost is
    shared), bound to the real matching.events exchange."""
    tag = uuid.uuid4().hex[:8]
    name, queue = f"marketdata_t{tag}", f"marketdata.trades.listing-{tag}"
    yield name, queue
    with Connection(nameko_config["AMQP_URI"]) as amqp:
        command_queue(queue)(amqp.default_channel).delete()


def deposit(rpc, user, asset, amount):
    address = rpc.wallets.deposit_address(user, asset)["address"]
    rpc.wallets.credit_deposit(asset, address, amount, "0x" + uuid.uuid4().hex * 2, 1000)


def test_a_market_listed_with_the_cli_trades_settles_and_shows_without_restart(
        container_factory, nameko_config, test_settings, admin_name, marketdata_name):
    name, trade_queue = marketdata_name
    marketdata = type("MarketDataService", (MarketDataService,), {"name": name})
    for cls, config in ((RegistryService, nameko_config), (WalletsService, nameko_config),
                        (MatchingService, nameko_config), (OrdersService, nameko_config),
                        (marketdata, {**nameko_config, "MARKETDATA_TRADE_QUEUE": trade_queue})):
        container_factory(cls, config).start()
    tag = uuid.uuid4().hex[:6].upper()
    base, quote = f"S{tag}", f"Q{tag}"
    market = f"{base}-{quote}"

    # -- the operator lists, on the running services ------------------------------
    for symbol, scale in ((base, "9"), (quote, "6")):
        listed = cli(test_settings, admin_name, "list-asset", symbol, "--scale", scale,
                     "--chain", "ethereum", "--confirmations", "3", "--withdrawal-fee", "0.01",
                     "--min-withdrawal", "1", "--daily-withdrawal-limit", "100000")
        assert listed["listed"] is True
    listed = cli(test_settings, admin_name, "list-market", market, "--tick", "0.01",
                 "--lot", "0.01", "--maker-fee", "0.001", "--taker-fee", "0.002",
                 "--min-qty", "0.01", "--max-qty", "10000", "--min-notional", "1")
    assert listed["market"]["status"] == "trading"

    with ClusterRpcProxy(nameko_config, timeout=30) as rpc:
        seller, buyer = f"t-{uuid.uuid4().hex[:12]}", f"t-{uuid.uuid4().hex[:12]}"
        for user in (seller, buyer):
            rpc.wallets.open_accounts(user)
        deposit(rpc, seller, base, "10")
        deposit(rpc, buyer, quote, "1000")

        sell = rpc.orders.place_order(seller, market, "sell", "limit", quantity="2",
                                      price="100", client_order_id="listing-sell")
        buy = rpc.orders.place_order(buyer, market, "buy", "limit", quantity="2",
                                     price="100", client_order_id="listing-buy")
        for user, order in ((seller, sell), (buyer, buy)):
            wait_for(lambda: rpc.orders.get_order(user, order["order_id"])["status"] == "filled",
                     timeout=30, what=f"{order['side']} to fill")

        def balances(user):
            return {asset: (Decimal(b["available"]), Decimal(b["locked"]))
                    for asset, b in rpc.wallets.balances(user)["balances"].items()
                    if asset in (base, quote)}
        # The seller made (fee 0.1 % of the 200 quote received), the buyer
        # took (0.2 % of the 2 base received); nothing stays locked.
        expected = {seller: {base: (Decimal("8"), 0), quote: (Decimal("199.8"), 0)},
                    buyer: {base: (Decimal("1.996"), 0), quote: (Decimal("800"), 0)}}
        for user in (seller, buyer):
            wait_for(lambda: balances(user) == expected[user], timeout=30,
                     what=f"{user} settled ({balances(user)})")

        trades = wait_for(lambda: getattr(rpc, name).get_trades(market)["trades"], timeout=30,
                          what="the trade in marketdata")
        assert len(trades) == 1, trades
        result = wait_for(lambda: (c := getattr(rpc, name).get_candles(market, "1m"))["candles"]
                          and c, timeout=30, what="the candle in marketdata")
        candle = dict(zip(result["columns"], result["candles"][0]))
        assert len(result["candles"]) == 1
        assert (Decimal(candle["close"]), Decimal(candle["volume"])) == (100, 2), candle
        assert rpc.wallets.audit() == []
