"""A market's status has one home, the registry: an operator halts it there
and the partner REST API follows. ``/api/v3/exchangeInfo`` shows the
symbol's status ``HALT`` (Binance's word; ``TRADING`` again after the
resume), and ``POST /api/v3/order`` is refused with Binance's -2010
"Market is closed." (orders' ORDER_REJECTED/MARKET_HALTED); resuming
restores trading. On the running stack, with a market and an operator of
the test's own (the demo markets are never halted; ``operator_token``:
tests/e2e/conftest.py).

The waits poll exchangeInfo (weight 20) and place orders: from a loopback
address of the test's own, every half second, so they never spend
127.0.0.1's weight a minute nor the trader's new orders per 10 s (polling
at 0.1 s, it spent 3,285 of 127.0.0.1's 6,000 in a minute)."""
import uuid

import pytest

from services.registry import errors  # noqa: F401 -- typed refusals back over RPC
from tests.e2e.gateway import binance_testkit as kit
from tests.e2e.loopback import own_address, session_from
from tests.integration.registry_kit import asset_spec, market_spec

POLL_S = 0.5
WAIT = {"timeout_s": 30, "interval_s": POLL_S}
POLLER = session_from(own_address())


@pytest.fixture
def own_market(settings, operator_token):
    """A market BASE-USDT listed for this test (delisted after it)."""
    base = f"H{uuid.uuid4().hex[:8].upper()}"
    market = f"{base}-USDT"
    with kit.rpc_proxy(settings) as rpc:
        rpc.registry.list_asset(operator_token, asset_spec(base))
        rpc.registry.list_market(operator_token, market_spec(market))
    yield market
    with kit.rpc_proxy(settings) as rpc:
        rpc.registry.update_market(operator_token, market, {"status": "delisted"})


def symbol_status(settings, binance: str):
    """The symbol's status in exchangeInfo; None while the gateway does not
    list it yet (its catalogue follows the registry's events)."""
    response = kit.raw(settings, "GET", "/api/v3/exchangeInfo", params={"symbol": binance},
                       session=POLLER)
    symbols = response.json().get("symbols") if response.status_code == 200 else None
    return symbols[0]["status"] if symbols else None


def buy(settings, trader, binance: str):
    return kit.raw(settings, "POST", "/api/v3/order", trader, body=True, session=POLLER,
                   params={"symbol": binance, "side": "BUY", "type": "LIMIT",
                           "timeInForce": "GTC", "price": "1.00", "quantity": "1"})


def cancel(settings, trader, binance: str, order_id) -> None:
    response = kit.raw(settings, "DELETE", "/api/v3/order", trader,
                       params={"symbol": binance, "orderId": order_id})
    assert response.status_code == 200, response.text


def refused_as_closed(settings, trader, binance: str) -> bool:
    """True once an order is refused as the market being closed. An order
    that orders still accepted (its copy of the registry not yet updated)
    is cancelled, and the next one tried."""
    response = buy(settings, trader, binance)
    if response.status_code == 200:
        # The halted engine may have rejected it already: then nothing to cancel.
        kit.raw(settings, "DELETE", "/api/v3/order", trader, session=POLLER,
                params={"symbol": binance, "orderId": response.json()["orderId"]})
        return False
    assert response.status_code == 400, response.text
    assert response.json() == {"code": -2010, "msg": "Market is closed."}
    return True


def test_a_market_halted_in_the_registry_is_closed_over_rest_until_resumed(
        settings, operator_token, own_market):
    binance = own_market.replace("-", "")
    trader = kit.new_trader(settings, {"USDT": "100"}, prefix="halt")
    # A just-listed market reaches the gateway with the registry's event.
    kit.eventually(lambda: symbol_status(settings, binance) == "TRADING", **WAIT)

    with kit.rpc_proxy(settings) as rpc:
        assert rpc.registry.halt_market(operator_token, own_market)["status"] == "halted"
    kit.eventually(lambda: symbol_status(settings, binance) == "HALT", **WAIT)
    kit.eventually(lambda: refused_as_closed(settings, trader, binance), **WAIT)

    with kit.rpc_proxy(settings) as rpc:
        assert rpc.registry.resume_market(operator_token, own_market)["status"] == "trading"
    kit.eventually(lambda: symbol_status(settings, binance) == "TRADING", **WAIT)
    placed = kit.eventually(
        lambda: (r := buy(settings, trader, binance)).status_code == 200 and r.json(),
        **WAIT)
    assert placed["status"] == "NEW"
    cancel(settings, trader, binance, placed["orderId"])
