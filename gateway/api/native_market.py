"""Public market data of the native API: assets, markets, tickers, depth, trades, candles."""
from __future__ import annotations

from decimal import Decimal

from gateway.api.native import TAG_MARKET, blueprint, reply
from gateway.assets import assets
from gateway.errors import ApiError
from gateway.markets import Market, catalogue
from gateway.schemas import Asset, AssetList, AssetPath
from gateway.schemas import Candle, Candles, CandlesQuery, Depth, DepthQuery
from gateway.schemas import Market as MarketOut
from gateway.schemas import (MarketList, MarketPath, PriceLevel, Ticker, TickerList, Trades,
                             TradesQuery)


def known_market(symbol: str) -> Market:
    """The market, from the gateway's one catalogue (gateway/markets.py); 404
    naming the field when it is not listed."""
    try:
        return catalogue().by_symbol(symbol)
    except ApiError as exc:
        if exc.code != "UNKNOWN_MARKET":
            raise
    raise ApiError(404, "UNKNOWN_MARKET", f"no market {symbol}", -1121, "Invalid symbol.",
                   field="market")


def _decimal(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def _market(market: Market) -> MarketOut:
    return MarketOut(market=market.symbol, base_asset=market.base, quote_asset=market.quote,
                     status=market.status, tick_size=_decimal(market.tick),
                     lot_size=_decimal(market.lot), min_quantity=_decimal(market.min_qty),
                     max_quantity=_decimal(market.max_qty),
                     min_notional=_decimal(market.min_notional),
                     base_precision=market.base_scale, quote_precision=market.quote_scale,
                     maker_fee=_decimal(market.maker_fee), taker_fee=_decimal(market.taker_fee))


def asset_out(info) -> Asset:
    """An asset as the API shows it, from the registry's ``AssetInfo`` (its
    decimal fields are canonical strings already: never a float)."""
    return Asset(asset=info.symbol, decimals=info.scale, chain=info.chain,
                 deposit_confirmations=info.confirmations,
                 deposit_enabled=info.deposit_enabled, withdraw_enabled=info.withdraw_enabled,
                 withdrawal_fee=info.withdrawal_fee, min_withdrawal=info.min_withdrawal,
                 daily_withdrawal_limit=info.daily_withdrawal_limit)


@blueprint.get("/assets", tags=[TAG_MARKET],
               summary="Every listed asset: decimals, chain, withdrawal fee, minimum and limit",
               responses={200: AssetList})
def list_assets():
    return reply(AssetList(assets=[asset_out(a) for a in assets().all()]))


@blueprint.get("/assets/<asset>", tags=[TAG_MARKET], summary="One asset and its withdrawal rules",
               responses={200: Asset})
def get_asset(path: AssetPath):
    found = assets().get(path.asset)
    if found is None:
        raise ApiError(404, "UNKNOWN_ASSET", f"no asset {path.asset}", -1100, field="asset")
    return reply(asset_out(found))


@blueprint.get("/markets", tags=[TAG_MARKET], summary="Every listed market and its trading rules",
               responses={200: MarketList})
def list_markets():
    return reply(MarketList(markets=[_market(m) for m in catalogue().markets()]))


@blueprint.get("/markets/<market>", tags=[TAG_MARKET], summary="One market's trading rules",
               responses={200: MarketOut})
def get_market(path: MarketPath):
    return reply(_market(known_market(path.market)))


@blueprint.get("/tickers", tags=[TAG_MARKET], summary="24-hour tickers of every market",
               responses={200: TickerList})
def list_tickers():
    from gateway.app import rpc
    with rpc() as services:
        tickers = services.marketdata.get_tickers()
    return reply(TickerList(tickers=[Ticker.model_validate(t) for t in tickers]))


@blueprint.get("/markets/<market>/ticker", tags=[TAG_MARKET], summary="One market's 24-hour ticker",
               responses={200: Ticker})
def get_ticker(path: MarketPath):
    from gateway.app import rpc
    known_market(path.market)
    with rpc() as services:
        return reply(Ticker.model_validate(services.marketdata.get_ticker(path.market)))


@blueprint.get("/markets/<market>/depth", tags=[TAG_MARKET],
               summary="The order book, best levels first, from the matching engine",
               responses={200: Depth})
def get_depth(path: MarketPath, query: DepthQuery):
    from gateway.app import rpc
    known_market(path.market)
    with rpc() as services:
        book = services.matching.get_depth(path.market, query.limit)

    def levels(side):
        return [PriceLevel(price=p, quantity=q) for p, q in book[side]]
    return reply(Depth(market=path.market, seq=book["seq"], bids=levels("buy"),
                       asks=levels("sell")))


@blueprint.get("/markets/<market>/trades", tags=[TAG_MARKET], summary="Recent trades, newest first",
               responses={200: Trades})
def get_trades(path: MarketPath, query: TradesQuery):
    from gateway.app import rpc
    known_market(path.market)
    with rpc() as services:
        page = services.marketdata.get_trades(path.market, query.limit)
    return reply(Trades(market=path.market, trades=page["trades"]))


@blueprint.get("/markets/<market>/candles", tags=[TAG_MARKET],
               summary="Candles, oldest first, [start, end) on their open time",
               responses={200: Candles})
def get_candles(path: MarketPath, query: CandlesQuery):
    from gateway.app import rpc
    known_market(path.market)
    if query.start is not None and query.end is not None and query.start >= query.end:
        raise ApiError(400, "INVALID_TIME_RANGE", "start must be before end", -1100, field="end")
    with rpc() as services:
        page = services.marketdata.get_candles(path.market, query.interval, query.start,
                                                query.end, query.limit)
    columns = page["columns"]
    candles = [Candle.model_validate(dict(zip(columns, row))) for row in page["candles"]]
    return reply(Candles(market=path.market, interval=query.interval, candles=candles,
                         next_start=page.get("next_start")))
