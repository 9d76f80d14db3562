"""``/api/v3/klines`` and ``/api/v3/uiKlines`` with Binance's ``timeZone``
(python-binance ``get_klines(timeZone=...)``, ``get_ui_klines``; ccxt
``fetch_ohlcv(..., params={"timeZone": ...})``): the intervals are
interpreted in the zone (a +08:00 daily kline opens at 16:00 UTC),
``startTime``/``endTime`` stay UTC. Checked against the UTC klines of a
finer interval, merged here by hand (each zone kline is the merge of the
finer ones opening in it), read before and after (a trade landing in
between: read again). An offset whose klines the stored candles cannot make
exactly is refused -1100, never answered with UTC klines. Before session 27
``timeZone`` was ignored (UTC klines for any zone) and uiKlines a 404."""
import time
from decimal import Decimal

import pytest
from binance.exceptions import BinanceAPIException

import binance_testkit as kit
from binance_testkit import BINANCE, SYMBOL

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
WEEK, MONDAY = 7 * DAY, 4 * DAY        # 1970-01-05T00:00Z, a Monday
# reads that another trade landing in between spoils are made again, at most so often
ATTEMPTS = 5


@pytest.fixture(scope="module")
def ours(gateway_url, maker, taker, settings):
    return kit.crossed_trades(gateway_url, maker, taker, settings, 2)


@pytest.fixture(scope="module")
def client(gateway_url):
    return kit.binance_client(gateway_url)


def _by_hand(rows, span: int, offset: int, origin: int = 0) -> list:
    """UTC kline rows merged into the zone's klines of ``span`` ms."""
    out: dict = {}
    for r in rows:
        opened = (r[0] + offset - origin) // span * span + origin - offset
        out.setdefault(opened, []).append(r)
    return [[k, Decimal(v[0][1]), max(Decimal(r[2]) for r in v), min(Decimal(r[3]) for r in v),
             Decimal(v[-1][4]), sum(Decimal(r[5]) for r in v), k + span - 1,
             sum(Decimal(r[7]) for r in v), sum(r[8] for r in v)]
            for k, v in sorted(out.items())]


def _numbers(rows) -> list:
    return [[r[0], *map(Decimal, r[1:6]), r[6], Decimal(r[7]), r[8]] for r in rows]


@pytest.mark.parametrize("interval, zone, finer, span, offset, origin", [
    ("1d", "+08:00", "1h", DAY, 8 * HOUR, 0),
    ("1d", "-1:00", "1h", DAY, -HOUR, 0),
    ("4h", "+09:00", "1h", 4 * HOUR, 9 * HOUR, 0),
    ("1h", "05:45", "15m", HOUR, 345 * MINUTE, 0),
    ("1w", "8", "1h", WEEK, 8 * HOUR, MONDAY)])
def test_zone_klines_are_the_finer_utc_klines_merged(client, ours, interval, zone, finer, span,
                                                     offset, origin):
    since = ours[0][1] - 2 * span
    for _ in range(ATTEMPTS):
        zoned = client.get_klines(symbol=BINANCE, interval=interval, timeZone=zone,
                                  startTime=since, limit=1000)
        utc = client.get_historical_klines(BINANCE, finer, start_str=zoned[0][0])
        again = client.get_klines(symbol=BINANCE, interval=interval, timeZone=zone,
                                  startTime=since, limit=1000)
        if again == zoned:
            break
    else:
        pytest.fail("the market traded during every attempt")
    assert zoned and all((r[0] + offset - origin) % span == 0 for r in zoned)
    assert zoned[0][0] >= since
    assert _numbers(zoned) == _by_hand(utc, span, offset, origin)
    assert all(r[6] == r[0] + span - 1 and isinstance(r[1], str) for r in zoned)


def test_a_whole_hour_offset_leaves_hourly_klines_as_they_are(client, ours):
    end = ours[-1][1]
    utc = client.get_klines(symbol=BINANCE, interval="1h", endTime=end, limit=5)
    for zone in ("-1:00", "+14:00", "-12:00", "0"):
        assert client.get_klines(symbol=BINANCE, interval="1h", endTime=end, limit=5,
                                 timeZone=zone) == utc


def test_the_last_klines_up_to_an_end_time(client, ours):
    end = ours[-1][1]
    zoned = client.get_klines(symbol=BINANCE, interval="1d", timeZone="+08:00", endTime=end,
                              limit=2)
    assert zoned[-1][0] <= end < zoned[-1][0] + DAY and (zoned[-1][0] + 8 * HOUR) % DAY == 0
    assert len(zoned) <= 2


def test_ccxt_passes_it_through(gateway_url, ours):
    exchange = kit.binance_local(gateway_url)
    candles = exchange.fetch_ohlcv(SYMBOL, "1d", since=ours[0][1] - 2 * DAY,
                                   params={"timeZone": "+08:00"})
    assert candles and all((c[0] + 8 * HOUR) % DAY == 0 for c in candles)


def test_ui_klines_are_the_klines(client, ours):
    end = ours[-1][1]
    for kwargs in ({"interval": "1m", "limit": 10}, {"interval": "1d", "timeZone": "+08:00"}):
        assert client.get_ui_klines(symbol=BINANCE, endTime=end, **kwargs) == \
            client.get_klines(symbol=BINANCE, endTime=end, **kwargs)


@pytest.mark.parametrize("interval, zone, code", [
    ("1d", "05:07", -1100), ("1w", "-3:17", -1100),     # not exact from the stored candles
    ("1h", "+14:01", -1100), ("1h", "-12:30", -1100), ("1h", "15", -1100),
    ("1h", "Asia/Shanghai", -1100), ("1h", "8:60", -1100), ("1h", "", -1105)])
def test_zones_it_cannot_serve_exactly_are_refused(client, interval, zone, code):
    for read in (client.get_klines, client.get_ui_klines):
        with pytest.raises(BinanceAPIException) as raised:
            read(symbol=BINANCE, interval=interval, timeZone=zone)
        assert raised.value.code == code and raised.value.status_code == 400
        assert "timeZone" in raised.value.message or code == -1105


def test_ui_klines_weigh_as_klines(settings):
    # a window one call covers (a read that pages pays per call, as klines do:
    # test_partner_paging_weight.py)
    now = int(time.time() * 1000)
    assert kit.charged_weight(settings, "/api/v3/uiKlines",
                              {"symbol": BINANCE, "interval": "1m", "startTime": now - 300_000,
                               "endTime": now, "limit": 1000}) == 2
