"""The trading path in-process on the real servers: matching, orders and
wallets (with its trade settlement) as Nameko containers on the test vhost."""
import time
import uuid
from contextlib import contextmanager
from decimal import Decimal

import eventlet
import pytest
from nameko.standalone.rpc import ClusterRpcProxy

from services.common.config import load_settings
from services.common.postgres import make_pool
from services.matching.service import MatchingService
from services.orders.providers import MatchingEvents
from services.orders.service import OrdersService
from services.wallets.service import WalletsService
from tests.integration.identity_kit import principal_tokens  # noqa: F401 (fixture)

MARKETS = ("BTC-USDT", "ETH-USDT")


def empty_books(rpc):
    """Each test starts from empty books with the band's reference at 100,
    reached the way an operator would: journaled commands (the journal and
    trade ids stay continuous)."""
    for market in MARKETS:
        # A halted engine follows the registry's status (the one home of it).
        assert not rpc.matching.get_depth(market, 1)["halted"], f"{market} is halted"

        def empty():
            depth = rpc.matching.get_depth(market, 1)
            if depth["buy"] or depth["sell"]:
                rpc.orders.cancel_market_orders(market)
                return False
            return True
        wait_for(empty, timeout=30, what=f"{market} to be empty")
        rpc.matching.set_reference_price(market, "100")


def as_admin(nameko_config, principal_tokens, **kwargs):
    """A proxy whose calls carry the test admin's access token (matching's
    admin verbs need it: services.common.principals)."""
    return ClusterRpcProxy(nameko_config, timeout=kwargs.pop("timeout", 30),
                           context_data={"access_token": principal_tokens.person("admin"),
                                         **kwargs.pop("context_data", {})}, **kwargs)


@pytest.fixture
def services(container_factory, nameko_config):
    """The started containers by service name (a test reaching a provider)."""
    started = {}
    for cls in (WalletsService, MatchingService, OrdersService):
        started[cls.name] = container_factory(cls, nameko_config)
        started[cls.name].start()
    return started


@pytest.fixture
def exchange(services, nameko_config, principal_tokens):
    with as_admin(nameko_config, principal_tokens) as rpc:
        empty_books(rpc)
        yield rpc
        assert rpc.wallets.audit() == [], "ledger audit after the test"


def fund(rpc, balances: dict, bitcoin_chain=("BTC",)) -> str:
    """A new user credited ``balances`` (asset -> amount) by confirmed
    deposits; the assets in ``bitcoin_chain`` take a bitcoin txid, the others
    an EVM one."""
    user = f"t-{uuid.uuid4().hex[:12]}"
    rpc.wallets.open_accounts(user)
    for asset, amount in balances.items():
        address = rpc.wallets.deposit_address(user, asset)["address"]
        txid = uuid.uuid4().hex * 2  # 64 hex digits: a BTC txid; EVM chains add 0x
        rpc.wallets.credit_deposit(asset, address, amount,
                                   txid if asset in bitcoin_chain else "0x" + txid, 1000)
    return user


def balance(rpc, user, asset) -> tuple[Decimal, Decimal]:
    b = rpc.wallets.balance(user, asset)
    return Decimal(b["available"]), Decimal(b["locked"])


def wait_for(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        eventlet.sleep(0.05)


def wait_status(rpc, user, order_id, statuses, timeout=20.0):
    return wait_for(lambda: (o := rpc.orders.get_order(user, order_id))["status"] in statuses and o,
                    timeout, f"order {order_id} to be {statuses}")


def wait_settled(rpc, user, asset, available, locked=Decimal(0)):
    return wait_for(lambda: balance(rpc, user, asset) == (Decimal(available), Decimal(locked)),
                    what=f"{user} {asset} to be {available}/{locked} "
                         f"(is {balance(rpc, user, asset)})")


@contextmanager
def matching_events(nameko_config):
    """The orders service's events consumer on a pool of its own: the test
    calls its ``handle`` with the deliveries it builds."""
    events = MatchingEvents()
    events.pool = make_pool(load_settings(), nameko_config["POSTGRES_DB"], min_size=1,
                            max_size=2, name="test-orders-events")
    try:
        yield events
    finally:
        events.pool.close()


def unseen_order(conn, user) -> int:
    """The id of a new open buy of 0.1 BTC-USDT at 100, its 10 USDT held,
    that the engine never saw (no command in the outbox): only the events a
    test delivers touch it."""
    order_id = conn.execute(
        "INSERT INTO orders (order_id, user_id, market, side, order_type, price, "
        "quantity, time_in_force, status, hold_asset, hold_amount) "
        "VALUES (nextval('order_ids'), %s, 'BTC-USDT', 'buy', 'limit', 100, 0.1, 'GTC', "
        "'new', 'USDT', 10) RETURNING order_id", (user,)).fetchone()[0]
    conn.execute("SELECT wallets.hold_funds(%s, 'USDT', 10, %s)", (user, f"order:{order_id}"))
    return order_id


def taker_fill(order_id, user, quantity="0.05", quote="5") -> tuple:
    """A delivery's trade at 100 in which ``order_id`` takes ``quantity``
    (its other side no order of ours)."""
    trade_id = f"test-BTC-USDT-{uuid.uuid4()}"
    return ("trade_executed", trade_id, {
        "market": "BTC-USDT", "seq": 1, "trade_id": trade_id, "price": "100",
        "quantity": quantity, "quote_quantity": quote, "taker_side": "buy",
        "maker_order_id": 2 ** 62, "maker_user_id": "nobody",
        "taker_order_id": order_id, "taker_user_id": user, "executed_at": 1})
