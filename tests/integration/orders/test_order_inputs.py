"""Hostile inputs of issue 11 against the real order path: each is refused
with ``INVALID_ORDER`` naming the field (or ``ORDER_REJECTED`` with the
engine's reason) before anything is held or journaled.

What the code before the strict grammar did with each (the regression):
``"1e10000000"`` froze the orders process for seconds, then failed with an
unnamed ``ValueError``; a 1 MB digit string took 27 s; an 11-digit
exponent would have taken hours; ``"١"`` placed a real
order; blanks and underscores were accepted; a 40-digit price was held and
journaled, then rejected by the engine; a NUL in an id reached PostgreSQL as
``DataError``."""
from decimal import Decimal as D

import psycopg
import pytest

from services.orders.errors import InvalidOrder, OrderRejected
from tests.integration.orders.conftest import balance, fund

MEGABYTE_OF_DIGITS = "9" * 1_000_000


def journal_size(test_settings) -> int:
    with psycopg.connect(test_settings.postgres_dsn()) as conn:
        return conn.execute("SELECT count(*) FROM orders").fetchone()[0]


@pytest.mark.parametrize("kwargs, field", [
    ({"price": "1e10000000", "quantity": "0.5"}, "price"),
    ({"price": "1e" + "9" * 11, "quantity": "0.5"}, "price"),   # hours before
    ({"price": "100", "quantity": MEGABYTE_OF_DIGITS}, "quantity"),
    ({"price": "100", "quantity": "١"}, "quantity"),
    ({"price": "100", "quantity": "  0.01 "}, "quantity"),
    ({"price": "1_000", "quantity": "0.01"}, "price"),
    ({"price": "1" * 40, "quantity": "0.01"}, "price"),
    ({"price": "100", "quantity": "0.01", "client_order_id": "ab\x00cd"}, "client_order_id"),
    ({"price": "100", "quantity": "0.01", "client_order_id": "x" * 37}, "client_order_id"),
    ({"price": "100", "quantity": "0.01", "side": "buy\x00"}, "side"),
    ({"price": "100", "quantity": "0.01", "time_in_force": 10 ** 30}, "time_in_force"),
    ({"price": 10 ** 30, "quantity": "0.01"}, "price"),
    ({"price": "100", "quantity": "0.01", "market": "BTC-USDT\x00"}, "market"),
])
def test_hostile_values_are_refused_naming_the_field_and_write_nothing(
        exchange, test_settings, kwargs, field):
    user = fund(exchange, {"USDT": "1000"})
    before = journal_size(test_settings)
    side = kwargs.pop("side", "buy")
    with pytest.raises(InvalidOrder) as raised:
        exchange.orders.place_order(user, kwargs.pop("market", "BTC-USDT"), side, "limit", **kwargs)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"INVALID_ORDER: {field}: "), str(raised.value)
    assert len(str(raised.value)) < 400, "the refusal does not echo the input"
    assert balance(exchange, user, "USDT") == (D("1000"), D("0"))
    assert journal_size(test_settings) == before


@pytest.mark.parametrize("user", ["t-\x00nul", "", "x" * 65, "bad user", 42, None])
def test_a_user_id_that_is_not_one_is_refused(exchange, user):
    with pytest.raises(InvalidOrder) as raised:
        exchange.orders.place_order(user, "BTC-USDT", "buy", "limit", quantity="0.01", price="100")
    assert str(raised.value).startswith("INVALID_ORDER: user: ") and raised.value.field == "user"
    with pytest.raises(InvalidOrder):
        exchange.orders.open_orders(user)


def test_a_price_on_the_grid_but_beyond_the_engines_range_is_refused_before_the_hold(
        exchange, test_settings):
    """20 integer digits pass the grammar; 10**22 ticks do not fit the engine."""
    user = fund(exchange, {"USDT": "1000"})
    before = journal_size(test_settings)
    with pytest.raises(OrderRejected) as raised:
        exchange.orders.place_order(user, "BTC-USDT", "buy", "limit", quantity="0.01",
                                    price="9" * 20)
    assert raised.value.reason == "INVALID_PRICE", str(raised.value)
    assert journal_size(test_settings) == before
    assert balance(exchange, user, "USDT") == (D("1000"), D("0"))


def test_a_quantity_below_the_markets_minimum_is_refused_before_the_hold(exchange, test_settings):
    user = fund(exchange, {"USDT": "1000"})
    before = journal_size(test_settings)
    with pytest.raises(OrderRejected) as raised:
        exchange.orders.place_order(user, "BTC-USDT", "buy", "limit", quantity="0.0001",
                                    price="0.01")
    assert raised.value.reason == "NOTIONAL_BELOW_MIN", str(raised.value)
    assert journal_size(test_settings) == before


@pytest.mark.parametrize("call", [
    lambda rpc, user: rpc.orders.get_order(user, order_id="1e5"),
    lambda rpc, user: rpc.orders.get_order(user, order_id=10 ** 30),
    lambda rpc, user: rpc.orders.get_order(user, client_order_id="a\x00"),
    lambda rpc, user: rpc.orders.get_order(user, client_order_id="a", market="BTC-USDT\x00"),
    lambda rpc, user: rpc.orders.get_order(user, client_order_id="a", market="x" * 100_000),
    lambda rpc, user: rpc.orders.cancel_order(user, "١"),
    lambda rpc, user: rpc.orders.amend_order(user, 1, price="1e10000000"),
    lambda rpc, user: rpc.orders.order_history(user, limit=10 ** 30),
    lambda rpc, user: rpc.orders.order_history(user, cursor=" 5"),
])
def test_ids_and_pages_go_through_the_grammar(exchange, call):
    user = fund(exchange, {"USDT": "10"})
    with pytest.raises(InvalidOrder):
        call(exchange, user)
