"""What an order holds and gives back (services/orders/holds.py): pure."""
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.orders import holds

prices = st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2)
quantities = st.decimals(min_value=D("0.0001"), max_value=D("1000"), places=4)


def test_a_buy_holds_quote_and_a_sell_holds_base():
    assert holds.initial_hold("BTC", "USDT", "buy", "limit", D("100.5"), D("2"), None) == \
        holds.Hold("USDT", D("201.0"), D("100.5"), D("2"))
    assert holds.initial_hold("BTC", "USDT", "sell", "limit", D("100.5"), D("2"), None) == \
        holds.Hold("BTC", D("2"), D("100.5"), D("2"))
    assert holds.initial_hold("BTC", "USDT", "buy", "market", None, None, D("50")) == \
        holds.Hold("USDT", D("50"), None, None)
    assert holds.initial_hold("BTC", "USDT", "sell", "market", None, D("0.3"), None).amount == D("0.3")


@given(prices, quantities, prices, quantities)
def test_an_amended_buy_always_holds_enough_for_its_caps(price, quantity, new_price, new_quantity):
    hold = holds.initial_hold("BTC", "USDT", "buy", "limit", price, quantity, None)
    extra, cap_price, cap_quantity = holds.amend_extra(
        "buy", hold.amount, hold.cap_price, hold.cap_quantity, new_price, new_quantity)
    assert extra >= 0
    assert (cap_price, cap_quantity) == (max(price, new_price), max(quantity, new_quantity))
    assert hold.amount + extra >= cap_price * cap_quantity
    assert hold.amount + extra >= new_price * new_quantity


def test_an_amended_sell_holds_only_more_quantity():
    assert holds.amend_extra("sell", D("2"), D("10"), D("2"), D("50"), D("1")) == (0, D("50"), D("2"))
    assert holds.amend_extra("sell", D("2"), D("10"), D("2"), D("9"), D("3"))[0] == D("1")


def test_the_leftover_is_what_was_not_spent_and_overspending_is_refused():
    assert holds.leftover("buy", D("100"), D("0.5"), D("49.75")) == D("50.25")
    assert holds.leftover("sell", D("2"), D("0.5"), D("49.75")) == D("1.5")
    with pytest.raises(ValueError, match="more than its hold"):
        holds.leftover("buy", D("10"), D("0.1"), D("11"))
