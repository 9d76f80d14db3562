"""A partner's ccxt bot backfilling public trades with ``since``:
``/api/v3/aggTrades?startTime=`` answers the FIRST trades from startTime on,
as on Binance, so that paging on from the last one's time misses none.

marketdata pages trades newest first, and the gateway used to answer with
the LAST ``limit`` trades of the hour after startTime (and, at a millisecond
holding several trades, more than ``limit``).
"""
import pytest

import binance_testkit as kit
from binance_testkit import SYMBOL

TRADES = 5


@pytest.fixture(scope="module")
def ours(gateway_url, maker, taker, settings):
    """TRADES trades of this module: [(trade id, time ms)], oldest first."""
    return kit.crossed_trades(gateway_url, maker, taker, settings, TRADES)


agg = kit.agg_trades


def test_start_time_gives_the_first_trades_from_it(settings, ours):
    first_id, first_at = ours[0]
    page = agg(settings, startTime=first_at, limit=2)
    assert len(page) <= 2 and page[0]["a"] == first_id
    assert all(t["T"] >= first_at for t in page)
    assert [t["a"] for t in page] == sorted(t["a"] for t in page)


def test_limit_caps_the_answer_with_start_and_end(settings, ours):
    first_at, last_at = ours[0][1], ours[-1][1]
    page = agg(settings, startTime=first_at, endTime=last_at, limit=1)
    assert len(page) == 1 and page[0]["a"] == ours[0][0]


def test_ccxt_paging_with_since_misses_no_trade(gateway_url, ours):
    """A bot's loop: fetch_trades(since, 2), since = last timestamp + 1,
    from our first trade until past our last one: all of ours are seen."""
    public = kit.binance_local(gateway_url)
    since, seen = ours[0][1], set()
    for _ in range(3 * TRADES):                 # bounded: 2 a page at least 1
        page = public.fetch_trades(SYMBOL, since, 2)
        if not page:
            break
        seen.update(int(t["id"]) for t in page)
        if page[-1]["timestamp"] >= ours[-1][1]:
            break
        since = page[-1]["timestamp"] + 1
    assert {a for a, _ in ours} <= seen
