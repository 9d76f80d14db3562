"""Exact amounts: what is accepted, what is refused, and that nothing rounds."""
from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from services.wallets.amounts import (
    MAX_AMOUNT_MINOR,
    format_amount,
    format_price,
    parse_amount,
    parse_price,
)
from services.wallets.assets import ASSETS
from services.common import grammar
from services.wallets.errors import AmountTooPrecise, InvalidAmount

BTC, ETH, USDT = ASSETS["BTC"], ASSETS["ETH"], ASSETS["USDT"]


@pytest.mark.parametrize("asset, value, minor", [
    (BTC, "1.5", 150_000_000),
    (BTC, "0.00000001", 1),
    (BTC, "1.500000000", 150_000_000),        # zeros beyond the scale are exact
    (BTC, "007", 700_000_000),
    (BTC, 2, 200_000_000),                    # ints are whole units
    (BTC, Decimal("0.1"), 10_000_000),
    (ETH, "0.000000000000000001", 1),
    (USDT, "15000.005", 15_000_005_000),
])
def test_parses_exact_decimals_into_minor_units(asset, value, minor):
    assert parse_amount(asset, value) == minor


@pytest.mark.parametrize("value", [
    1.5, 0.1, True, False, None, [], {}, b"1",
    "NaN", "nan", "Infinity", "inf", "-Infinity", "1e3", "1E-2", "+1", " 1", "1 ", "",
    ".5", "5.", "1,5", "0x10", "one", "1.2.3", "--1", "½",
    Decimal("NaN"), Decimal("Infinity"), Decimal("1E+100"),
])
def test_refuses_anything_but_a_plain_positive_decimal(value):
    with pytest.raises(InvalidAmount) as raised:
        parse_amount(BTC, value)
    assert str(raised.value).startswith("INVALID_AMOUNT: ")


@pytest.mark.parametrize("value", ["0", "0.00000000", 0, Decimal(0), "-1", -1, "-0.5", Decimal("-2")])
def test_refuses_zero_and_negative(value):
    with pytest.raises(InvalidAmount):
        parse_amount(BTC, value)


@pytest.mark.parametrize("value", ["1" + "0" * 60, 10 ** 40, str(MAX_AMOUNT_MINOR), "9" * 81])
def test_refuses_huge_amounts(value):
    with pytest.raises(InvalidAmount):
        parse_amount(ETH, value)


@pytest.mark.parametrize("asset, value", [
    (BTC, "0.000000001"), (BTC, "1.123456789"), (USDT, "0.0000001"),
    (ETH, "0.0000000000000000001"), (BTC, Decimal("0.000000015")),
])
def test_too_many_decimals_is_an_error_never_a_rounding(asset, value):
    with pytest.raises(AmountTooPrecise) as raised:
        parse_amount(asset, value)
    assert raised.value.code == "AMOUNT_TOO_PRECISE"


def test_signed_amounts_only_when_asked():
    assert parse_amount(BTC, "-0.5", signed=True) == -50_000_000
    with pytest.raises(InvalidAmount):
        parse_amount(BTC, "0", signed=True)


def test_formats_with_the_full_scale_of_the_asset():
    assert format_amount(BTC, 150_000_000) == "1.50000000"
    assert format_amount(ETH, 1) == "0.000000000000000001"
    assert format_amount(USDT, 0) == "0.000000"
    assert format_amount(USDT, -15_000_005) == "-15.000005"


@given(asset=st.sampled_from(sorted(ASSETS)), minor=st.integers(1, MAX_AMOUNT_MINOR - 1))
def test_format_then_parse_is_the_identity(asset, minor):
    """Up to the grammar's MAX_DIGITS whole digits (services.common.grammar)."""
    minor = minor % (10 ** (grammar.MAX_DIGITS + ASSETS[asset].scale)) or 1
    assert parse_amount(ASSETS[asset], format_amount(ASSETS[asset], minor)) == minor


@pytest.mark.parametrize("value", ["١", "٣٠٠٠٠", "1_000", "  0.01 ", "1e10000000",
                                   "9" * 1_000_000, "1" * 40, "1\x00", 10 ** 30])
def test_refuses_the_hostile_amounts_of_issue_11(value):
    with pytest.raises(InvalidAmount):
        parse_amount(BTC, value)
    with pytest.raises(InvalidAmount):
        parse_price(value)


@pytest.mark.parametrize("value, fraction, text", [
    ("30000.01", (3000001, 100), "30000.01"),
    ("30000.10", (300001, 10), "30000.1"),
    ("2", (2, 1), "2"),
    (7, (7, 1), "7"),
    (Decimal("0.500"), (5, 10), "0.5"),
])
def test_prices_are_exact_fractions(value, fraction, text):
    assert parse_price(value) == fraction
    assert format_price(*fraction) == text


@pytest.mark.parametrize("value", [0, "0", "0.00", -1, "-1", 1.5, "NaN", "1e5", None, True])
def test_refuses_bad_prices(value):
    with pytest.raises(InvalidAmount):
        parse_price(value)
