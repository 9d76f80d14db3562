"""The e2e kit's price where only a test's own orders meet, on books the dev
stack is left with (no servers)."""
from decimal import Decimal as D

import pytest

from tests.e2e.gateway.native_testkit import price_inside_spread

TICK = D("0.01")


def book(bid=None, ask=None, reference="2000.00"):
    return {"reference_price": reference, "buy": [[bid, "0.1"]] if bid else [],
            "sell": [[ask, "0.1"]] if ask else []}


@pytest.mark.parametrize("pick", [min, max], ids=["lowest", "highest"])
def test_a_spread_two_ticks_wide_has_its_one_price(pick):
    assert price_inside_spread(book("1999.92", "1999.94"), TICK, pick) == D("1999.93")


@pytest.mark.parametrize("pick", [min, max], ids=["lowest", "highest"])
def test_every_pick_is_strictly_inside_the_spread_and_the_band(pick):
    assert price_inside_spread(book("1999.77", "1999.94"), TICK, pick) == {
        min: D("1999.78"), max: D("1999.93")}[pick]
    # An empty book: the band around the reference, on the grid.
    assert price_inside_spread(book(reference="2000.13"), TICK, pick) == {
        min: D("1940.13"), max: D("2060.13")}[pick]


def test_a_spread_of_one_tick_has_no_such_price():
    with pytest.raises(AssertionError, match="no price inside the spread"):
        price_inside_spread(book("1999.93", "1999.94"), TICK)
