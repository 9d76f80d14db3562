"""``/api/v3/aggTrades?fromId=``: Binance's "ID to get aggregate trades from
INCLUSIVE", which python-binance's ``aggregate_trade_iter`` pages with (its
first page by time or ``fromId=0``, then ``fromId=<last id>`` dropping the
first trade of each answer, until an answer holds nothing new). Our
aggregate trade ids are the market's trade numbers (1, 2, 3, ...).

Before session 12 the gateway refused ``fromId`` (-1106), so the iterator
raised on its second call."""
import itertools

import pytest
from binance.exceptions import BinanceAPIException

import binance_testkit as kit
from binance_testkit import BINANCE

TRADES = 5
ITER_CAP = 20_000        # bounds the iterator: it reads to the end of the history


@pytest.fixture(scope="module")
def ours(gateway_url, maker, taker, settings):
    """TRADES trades of this module: [(trade id, time ms)], oldest first."""
    return kit.crossed_trades(gateway_url, maker, taker, settings, TRADES)


agg = kit.agg_trades


def consecutive(ids: list) -> bool:
    return ids == list(range(ids[0], ids[0] + len(ids)))


def test_python_binance_iterates_from_a_start_time(gateway_url, ours):
    client = kit.binance_client(gateway_url)
    got = [t["a"] for t in itertools.islice(
        client.aggregate_trade_iter(BINANCE, start_str=ours[0][1]), ITER_CAP)]
    assert len(got) < ITER_CAP
    assert got[0] <= ours[0][0] and consecutive(got)
    assert {a for a, _ in ours} <= set(got)


def test_python_binance_iterates_after_a_last_id(gateway_url, ours):
    client = kit.binance_client(gateway_url)
    got = [t["a"] for t in itertools.islice(
        client.aggregate_trade_iter(BINANCE, last_id=ours[0][0]), ITER_CAP)]
    assert len(got) < ITER_CAP
    assert got[0] == ours[0][0] + 1 and consecutive(got)
    assert {a for a, _ in ours[1:]} <= set(got)


def test_from_id_is_inclusive_and_limit_caps_it(settings, ours):
    first = ours[0][0]
    page = agg(settings, fromId=first, limit=3)
    assert [t["a"] for t in page] == [first, first + 1, first + 2]
    assert page[0]["T"] == ours[0][1] and all(t["a"] == t["f"] == t["l"] for t in page)
    assert len(agg(settings, fromId=first)) >= TRADES        # default limit 500


def test_from_id_zero_starts_at_the_first_trade(settings, ours):
    page = agg(settings, fromId=0, limit=2)
    assert [t["a"] for t in page] == [1, 2]
    assert page[0]["T"] <= page[1]["T"] <= ours[0][1]


def test_from_id_beyond_the_last_trade_is_empty(settings, ours):
    assert agg(settings, fromId=ours[-1][0] + 10_000_000) == []


def test_from_id_with_a_time_window_is_refused(settings, ours):
    response = kit.raw(settings, "GET", "/api/v3/aggTrades",
                       params={"symbol": BINANCE, "fromId": ours[0][0], "startTime": ours[0][1]})
    assert response.status_code == 400 and response.json()["code"] == -1128


def test_python_binance_sees_the_refusal_as_an_api_error(gateway_url, ours):
    client = kit.binance_client(gateway_url)
    with pytest.raises(BinanceAPIException) as refused:
        client.get_aggregate_trades(symbol=BINANCE, fromId=-1)
    assert refused.value.code == -1100
