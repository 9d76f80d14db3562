"""Nothing is dropped for a market that is not listed yet: wallets parks the
trade durably, reports degraded health and the parked trade in audit(), and
settles it as soon as the registry's listing reaches it; no funds stay held.

The trade arrives before its market's listing (as when the listing event is
late or lost: a catalogue lookup that misses reads the registry again, so a
trade is parked exactly while the registry does not list its market)."""
import uuid
from decimal import Decimal

from nameko.standalone.events import event_dispatcher
from nameko.standalone.rpc import ClusterRpcProxy

from services.registry.service import RegistryService
from services.wallets.service import WalletsService
from tests.integration.orders.conftest import wait_for
from tests.integration.registry_kit import asset_spec, list_asset, list_market, market_spec


def test_a_trade_of_an_unlisted_market_is_parked_then_settled_when_it_is_listed(
        container_factory, nameko_config, test_settings):
    for cls in (RegistryService, WalletsService):
        container_factory(cls, nameko_config).start()
    tag = uuid.uuid4().hex[:6].upper()
    base, quote = f"P{tag}", f"R{tag}"
    market = f"{base}-{quote}"
    list_asset(test_settings, asset_spec(base, scale=8))
    list_asset(test_settings, asset_spec(quote, scale=6, chain="ethereum"))

    with ClusterRpcProxy(nameko_config, timeout=30) as rpc:
        seller, buyer = f"t-{uuid.uuid4().hex[:12]}", f"t-{uuid.uuid4().hex[:12]}"
        for user, asset, amount in ((seller, base, "10"), (buyer, quote, "1000")):
            rpc.wallets.open_accounts(user)
            address = rpc.wallets.deposit_address(user, asset)["address"]
            txid = uuid.uuid4().hex * 2
            rpc.wallets.credit_deposit(asset, address, amount,
                                       txid if asset == base else "0x" + txid, 1000)
        # The funds an engine's orders would hold: 2 base sold, 200 quote spent.
        rpc.wallets.hold(seller, base, "2", f"parked-test:{tag}:sell")
        rpc.wallets.hold(buyer, quote, "200", f"parked-test:{tag}:buy")

        event_dispatcher(nameko_config)("matching", "trade_executed", {
            "market": market, "seq": 1, "trade_id": f"{market}-1", "price": "100",
            "quantity": "2", "quote_quantity": "200", "taker_side": "buy",
            "maker_order_id": 1, "maker_user_id": seller, "taker_order_id": 2,
            "taker_user_id": buyer, "executed_at": 1796400000000})

        health = wait_for(lambda: (h := rpc.wallets.health())["parked_trades"] and h,
                          timeout=30, what="the trade to be parked")
        assert health["status"] == "degraded"
        assert any(f["check"] == "trade_parked" and market in f["detail"]
                   for f in rpc.wallets.audit())
        assert rpc.wallets.balance(buyer, quote)["locked"] == "200.000000"

        list_market(test_settings, market_spec(market, tick="0.01", lot="0.0001"))

        def settled():
            return (rpc.wallets.balance(seller, base), rpc.wallets.balance(seller, quote),
                    rpc.wallets.balance(buyer, base), rpc.wallets.balance(buyer, quote))
        wait_for(lambda: [(Decimal(b["available"]), Decimal(b["locked"])) for b in settled()]
                 == [(8, 0), (Decimal("199.8"), 0), (Decimal("1.996"), 0), (800, 0)],
                 timeout=30, what=f"the parked trade to settle ({settled()})")
        assert rpc.wallets.health()["status"] == "ok"
        assert rpc.wallets.audit() == []
