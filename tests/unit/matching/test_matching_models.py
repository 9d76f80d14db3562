"""Boundary values: market config, decimal <-> ticks/lots/notional, command and event dicts."""

import json
import os
import subprocess
import sys
from decimal import Decimal

import pytest

from services.matching.models import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    ConfigError,
    Halt,
    InvalidCommand,
    InvalidValue,
    MarketConfig,
    PlaceOrder,
    Resume,
    SetReferencePrice,
    command_from_dict,
    command_to_dict,
    event_to_dict,
    place_order_from_decimals,
)

BTC = MarketConfig("BTC-USDT", "BTC", "USDT", tick_size="0.01", lot_size="0.00001", min_notional="5")


@pytest.mark.parametrize("value, ticks", [("100.01", 10001), ("0.01", 1), (Decimal("30000"), 3000000), (7, 700), ("1.50", 150)])
def test_price_to_ticks(value, ticks):
    assert BTC.price_to_ticks(value) == ticks


@pytest.mark.parametrize(
    "value, code",
    [
        ("100.001", "PRICE_OFF_TICK"),
        ("0", "NOT_POSITIVE"),
        ("-1", "INVALID_NUMBER"),
        (" 1.50 ", "INVALID_NUMBER"),   # blanks, exponents, Unicode digits: the strict grammar
        ("1E-2", "INVALID_NUMBER"),
        ("١", "INVALID_NUMBER"),
        ("1e10000000", "INVALID_NUMBER"),
        ("1_000", "INVALID_NUMBER"),
        ("NaN", "INVALID_NUMBER"),
        ("Infinity", "INVALID_NUMBER"),
        ("-inf", "INVALID_NUMBER"),
        ("1e", "INVALID_NUMBER"),
        ("abc", "INVALID_NUMBER"),
        ("", "INVALID_NUMBER"),
        (100.5, "INVALID_NUMBER"),
        (True, "INVALID_NUMBER"),
        (None, "INVALID_NUMBER"),
    ],
)
def test_price_to_ticks_rejects_bad_values_with_a_code(value, code):
    with pytest.raises(InvalidValue) as err:
        BTC.price_to_ticks(value)
    assert err.value.code == code
    assert isinstance(err.value, ValueError)


def test_quantity_and_quote_conversions():
    assert BTC.qty_to_lots("0.5") == 50000
    assert BTC.qty_to_lots("0.00001") == 1
    with pytest.raises(InvalidValue) as err:
        BTC.qty_to_lots("0.000001")
    assert err.value.code == "QTY_OFF_LOT"
    # notional unit = 0.01 * 0.00001 = 1e-7 quote
    assert BTC.quote_to_units("10") == 100_000_000
    assert BTC.quote_to_units("0.0000001") == 1
    with pytest.raises(InvalidValue) as err:
        BTC.quote_to_units("0.00000001")
    assert err.value.code == "AMOUNT_OFF_GRID"


def test_back_to_decimal_strings_is_exact():
    assert BTC.ticks_to_price(10001) == "100.01"
    assert BTC.ticks_to_price(1) == "0.01"
    assert BTC.lots_to_qty(150000) == "1.50000"
    assert BTC.units_to_quote(123) == "0.0000123"
    assert BTC.units_to_quote(10001 * 150000) == "150.0150000"  # price x qty, exact
    odd = MarketConfig("X", "X", "Y", tick_size="0.05", lot_size="5")
    assert odd.ticks_to_price(3) == "0.15" and odd.lots_to_qty(3) == "15"
    assert odd.price_to_ticks("0.15") == 3
    with pytest.raises(InvalidValue):
        odd.price_to_ticks("0.12")
    with pytest.raises(InvalidValue):
        BTC.ticks_to_price(1.0)
    for ticks in (1, 7, 10001, 123456789):
        assert BTC.price_to_ticks(BTC.ticks_to_price(ticks)) == ticks


def test_config_derives_integer_rules():
    c = MarketConfig(
        "ETH-USDT", "ETH", "USDT", "0.01", "0.0001", min_quantity="0.001", max_quantity="100",
        min_notional="10", price_band_percent="7.5", max_open_orders=50, default_stp="EXPIRE_MAKER",
    )
    assert (c.min_lots, c.max_lots, c.min_notional_units) == (10, 1_000_000, 10_000_000)
    assert (c.band_num, c.band_den) == (15, 2)
    assert MarketConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


@pytest.mark.parametrize(
    "overrides",
    [
        {"tick_size": "0"},
        {"tick_size": "abc"},
        {"lot_size": "-1"},
        {"min_quantity": "0.000001"},
        {"min_quantity": "2", "max_quantity": "1"},
        {"min_notional": "0.000000001"},
        {"price_band_percent": "0"},
        {"max_open_orders": 0},
        {"default_stp": "CANCEL_BOTH"},
        {"halted": "no"},
        {"symbol": ""},
    ],
)
def test_invalid_configs_raise_config_error(overrides):
    base = dict(symbol="X-Y", base_asset="X", quote_asset="Y", tick_size="0.01", lot_size="0.001")
    base.update(overrides)
    with pytest.raises(ConfigError) as err:
        MarketConfig(**base)
    assert err.value.code == "INVALID_CONFIG"


def test_place_order_from_decimals_converts_or_raises():
    cmd = place_order_from_decimals(BTC, 1, "u", "buy", price="30000.01", quantity="0.5")
    assert cmd == PlaceOrder(1, "u", "buy", "limit", 3000001, 50000)
    cmd = place_order_from_decimals(BTC, 2, "u", "buy", "market", quote_amount="25")
    assert cmd.quote_amount == 250_000_000 and cmd.price is None
    with pytest.raises(InvalidValue) as err:
        place_order_from_decimals(BTC, 3, "u", "buy", price="1.001", quantity="1")
    assert err.value.code == "PRICE_OFF_TICK"


@pytest.mark.parametrize(
    "command",
    [
        PlaceOrder(1, "u", "sell", "limit", 100, 5, None, "IOC", False, "EXPIRE_BOTH"),
        PlaceOrder(2, 42, "buy", "market", quote_amount=999),
        CancelOrder(3, "u"),
        CancelOrder(3),
        CancelAll("u"),
        AmendOrder(4, None, 101, None),
        Halt(),
        Resume(),
        SetReferencePrice(100),
    ],
)
def test_commands_round_trip_through_json(command):
    data = json.loads(json.dumps(command_to_dict(command)))
    assert data["type"] in ("place_order", "cancel_order", "cancel_all", "amend_order", "halt", "resume", "set_reference_price")
    back = command_from_dict(data)
    assert back == command and type(back) is type(command)


@pytest.mark.parametrize(
    "data",
    [{"type": "launch"}, {"order_id": 1}, {"type": "cancel_order"}, {"type": "cancel_order", "order_id": 1, "colour": "red"}, None],
)
def test_bad_command_dicts_raise_invalid_command(data):
    with pytest.raises(InvalidCommand):
        command_from_dict(data)


def test_event_dicts_name_every_field():
    trade = ("trade_executed", 7, 3, 10001, 50000, "buy", 11, "m", 12, "t")
    assert event_to_dict(trade, "BTC-USDT") == {
        "type": "trade_executed", "market": "BTC-USDT", "seq": 7, "trade_id": 3, "price": 10001,
        "quantity": 50000, "taker_side": "buy", "maker_order_id": 11, "maker_user_id": "m",
        "taker_order_id": 12, "taker_user_id": "t",
    }
    done = ("order_done", 7, 11, "m", "sell", "filled", None, 50000, 0, None)
    assert event_to_dict(done, "BTC-USDT")["remaining_quantity"] == 0


def test_engine_modules_import_nothing_that_does_io():
    """The pure core may import only the standard library's pure parts and sortedcontainers."""
    code = (
        "import sys; before = set(sys.modules); import services.matching.engine; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    forbidden = {"socket", "logging", "threading", "subprocess", "asyncio", "eventlet", "nameko", "psycopg", "select", "ssl"}
    assert not forbidden & set(out), sorted(forbidden & set(out))
    assert "sortedcontainers" in out


def test_benchmark_smoke_run():
    """The benchmark runs end to end on a short stream and prints its figures."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    run = subprocess.run(
        [sys.executable, "bench/engine_bench.py", "--commands", "3000", "--build-up", "500"],
        cwd=root, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    for figure in ("commands/s", "trades/s", "p50", "p99", "p99.9", "peak RSS", "Python"):
        assert figure in run.stdout
