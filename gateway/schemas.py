"""The native API's request and response bodies, defined once.

Each model both validates what a client sends (flask-openapi3 runs it before
the view) and describes it in the OpenAPI 3.1 document at
``/api/v1/openapi.json``. Responses are built through their model too, so the
document and the wire cannot drift apart.

Conventions: decimals are strings checked by ``services.common.grammar``
(strict: ASCII digits, at most one point; never a float), times are epoch
milliseconds, market symbols look like ``BTC-USDT``. A refused value names
its field: the grammar's code (``INVALID_NUMBER``, ``TOO_PRECISE``, ...) is
the error code, the field's path is ``error.field``.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal, Optional

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt,
                      ValidationInfo, model_validator)
from pydantic_core import PydanticCustomError

from services.common import grammar
from services.common.errors import InvalidInput

DECIMAL_PATTERN = r"^[0-9]{1,%d}(\.[0-9]{1,%d})?$" % (grammar.MAX_DIGITS, grammar.MAX_SCALE)
SIGNED_DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
MARKET_PATTERN = r"^[A-Z0-9]{1,16}-[A-Z0-9]{1,16}$"
ASSET_PATTERN = r"^[A-Z0-9]{1,16}$"
CLIENT_ORDER_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,36}$"
API_KEY_PATTERN = r"^[A-Za-z0-9-]{1,64}$"
ADDRESS_PATTERN = r"^[A-Za-z0-9]{1,128}$"
REF_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
LABEL_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]{1,64}$"
MAX_MS = 2 ** 53 - 1  # epoch ms: JSON-safe integers
MAX_EXPIRES_AT_MS = 32_503_680_000_000  # 3000-01-01


def _grammar(check):
    """A pydantic validator running one grammar check; its refusal becomes a
    pydantic error whose type is the grammar's code (the field's path is
    added by pydantic's error location)."""
    def validate(value, info: ValidationInfo):
        try:
            return check(value, info.field_name or "value")
        except InvalidInput as exc:
            raise _refusal(exc) from None
    return BeforeValidator(validate)


def _refusal(exc: InvalidInput) -> PydanticCustomError:
    return PydanticCustomError(exc.code, "{message}", {"message": exc.message})


_ADDRESS = re.compile(ADDRESS_PATTERN[1:-1])


def _withdrawal_address(value, info: ValidationInfo):
    """A withdrawal's address as far as the gateway can tell without its
    chain (wallets checks it for the asset's chain): 1 to 128 letters and
    digits. Refused in a trader's words naming the asset (the web client
    shows the message as it is), not with the pattern, which only the
    OpenAPI document gives."""
    try:
        grammar.text(value, "address", max_len=128)
    except InvalidInput as exc:
        raise _refusal(exc) from None
    if not _ADDRESS.fullmatch(value):
        asset = (info.data or {}).get("asset")
        raise PydanticCustomError("INVALID_TEXT", "{message}", {
            "message": f"address is not a valid {asset + ' ' if asset else ''}address: "
                       "an address has letters and digits only"})
    return value


def _decimal_text(value, field):
    grammar.decimal(value, field)
    return value if isinstance(value, str) else str(value)


def _text_of(pattern: str, max_len: int):
    compiled = re.compile(pattern[1:-1])
    return lambda value, field: grammar.text(value, field, max_len=max_len, pattern=compiled)


def _integer(minimum: int, maximum: int):
    return lambda value, field: grammar.integer(value, field, minimum=minimum, maximum=maximum)


# -- field types ---------------------------------------------------------------

Decimal = Annotated[str, Field(pattern=DECIMAL_PATTERN, examples=["0.01"],
                                description="a positive decimal string (never a number)"),
                    _grammar(_decimal_text)]
DecimalOut = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?$", examples=["30000.5"])]
SignedDecimalOut = Annotated[str, Field(pattern=SIGNED_DECIMAL_PATTERN, examples=["-0.5"])]
MarketSymbol = Annotated[str, Field(pattern=MARKET_PATTERN, description="like BTC-USDT"),
                         _grammar(_text_of(MARKET_PATTERN, 33))]
AssetCode = Annotated[str, Field(pattern=ASSET_PATTERN, description="like USDT"),
                      _grammar(_text_of(ASSET_PATTERN, 16))]
ClientOrderId = Annotated[str, Field(pattern=CLIENT_ORDER_ID_PATTERN),
                          _grammar(_text_of(CLIENT_ORDER_ID_PATTERN, 36))]
EpochMs = Annotated[int, Field(ge=0, le=MAX_MS, description="epoch milliseconds"),
                    _grammar(_integer(0, MAX_MS))]
Id = Annotated[int, Field(ge=1, le=grammar.MAX_INT), _grammar(_integer(1, grammar.MAX_INT))]


def Limit(maximum: int, default: int):  # noqa: N802 - a type factory
    return Annotated[int, Field(default=default, ge=1, le=maximum), _grammar(_integer(1, maximum))]


class Strict(BaseModel):
    """Bodies: an unknown field is refused, not ignored (a typo is an error)."""
    model_config = ConfigDict(extra="forbid")


class Query(BaseModel):
    """Query strings: unknown parameters are ignored (API-key requests carry
    ``timestamp``, ``recvWindow`` and ``signature`` here)."""
    model_config = ConfigDict(extra="ignore")


class Out(BaseModel):
    """Responses: built from the services' answers; extra keys are dropped."""
    model_config = ConfigDict(extra="ignore")


# -- errors --------------------------------------------------------------------

class ErrorDetail(Out):
    code: str = Field(examples=["INSUFFICIENT_FUNDS"])
    message: str
    request_id: str
    field: Optional[str] = Field(default=None, description="the refused field, when one is")


class ErrorBody(Out):
    error: ErrorDetail


class ServerTime(Out):
    server_time: int = Field(description="epoch milliseconds")


# -- paths ---------------------------------------------------------------------

class MarketPath(BaseModel):
    market: MarketSymbol


class AssetPath(BaseModel):
    asset: AssetCode


class OrderPath(BaseModel):
    order_id: Id


class WithdrawalPath(BaseModel):
    withdrawal_id: Id


class ApiKeyPath(BaseModel):
    api_key: Annotated[str, Field(pattern=API_KEY_PATTERN, description="the key or its key_id"),
                       _grammar(_text_of(API_KEY_PATTERN, 64))]


# -- market data ---------------------------------------------------------------

class Market(Out):
    market: str = Field(examples=["BTC-USDT"])
    base_asset: str
    quote_asset: str
    status: str = Field(examples=["TRADING", "HALT"])
    tick_size: DecimalOut
    lot_size: DecimalOut
    min_quantity: DecimalOut
    max_quantity: Optional[DecimalOut] = None
    min_notional: DecimalOut
    base_precision: int = Field(description="decimals of the base asset")
    quote_precision: int = Field(description="decimals of the quote asset")
    maker_fee: DecimalOut = Field(description="a fraction: 0.001 is 0.1 %")
    taker_fee: DecimalOut


class MarketList(Out):
    markets: list[Market]


class Asset(Out):
    """An asset and its withdrawal rules, as the registry lists them."""
    asset: str = Field(examples=["BTC"])
    decimals: int = Field(description="amounts have at most this many decimals")
    chain: str = Field(examples=["bitcoin", "ethereum"])
    deposit_confirmations: int = Field(description="a deposit is credited once it has this many")
    deposit_enabled: bool
    withdraw_enabled: bool
    withdrawal_fee: DecimalOut = Field(description="held on top of the amount withdrawn")
    min_withdrawal: DecimalOut = Field(description="the smallest amount withdrawn")
    daily_withdrawal_limit: DecimalOut = Field(
        description="the most one user may withdraw over a rolling 24 hours")


class AssetList(Out):
    assets: list[Asset]


class Ticker(Out):
    market: str
    open: Optional[DecimalOut] = None
    high: Optional[DecimalOut] = None
    low: Optional[DecimalOut] = None
    last: Optional[DecimalOut] = None
    volume: DecimalOut
    quote_volume: DecimalOut
    change: Optional[SignedDecimalOut] = None
    change_percent: Optional[SignedDecimalOut] = None
    trade_count: int
    best_bid: Optional[DecimalOut] = None
    best_bid_quantity: Optional[DecimalOut] = None
    best_ask: Optional[DecimalOut] = None
    best_ask_quantity: Optional[DecimalOut] = None
    window_start: Optional[int] = None
    last_trade_at: Optional[int] = None

    @model_validator(mode="before")
    @classmethod
    def _best_levels(cls, data):
        """marketdata gives the best levels as ``[price, quantity]`` (None
        while it holds no book): the API names the two."""
        if isinstance(data, dict):
            data = dict(data)
            for side in ("best_bid", "best_ask"):
                level = data.get(side)
                if isinstance(level, (list, tuple)) and len(level) == 2:
                    data[side], data[f"{side}_quantity"] = level
        return data


class TickerList(Out):
    tickers: list[Ticker]


class DepthQuery(Query):
    limit: Limit(1000, 50)


class PriceLevel(Out):
    price: DecimalOut
    quantity: DecimalOut


class Depth(Out):
    market: str
    seq: int = Field(description="the engine's sequence number of this book state")
    bids: list[PriceLevel]
    asks: list[PriceLevel]


class TradesQuery(Query):
    limit: Limit(1000, 100)


class PublicTrade(Out):
    trade_id: str
    price: DecimalOut
    quantity: DecimalOut
    quote_quantity: DecimalOut
    taker_side: Literal["buy", "sell"]
    executed_at: int


class Trades(Out):
    market: str
    trades: list[PublicTrade]


Interval = Literal["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"]


class CandlesQuery(Query):
    interval: Interval = "1m"
    start: Optional[EpochMs] = None
    end: Optional[EpochMs] = None
    limit: Limit(1500, 500)


class Candle(Out):
    open_time: int
    open: DecimalOut
    high: DecimalOut
    low: DecimalOut
    close: DecimalOut
    volume: DecimalOut
    quote_volume: DecimalOut
    trade_count: int


class Candles(Out):
    market: str
    interval: Interval
    candles: list[Candle]
    next_start: Optional[int] = Field(default=None, description="pass as start for the next page")


# -- the caller ----------------------------------------------------------------

class Me(Out):
    user_id: str
    username: Optional[str] = None
    state: str = Field(examples=["active"])
    roles: list[str]
    strong_auth: bool = Field(description="the session passed the one-time password")
    auth: Literal["token", "api_key"]
    permissions: list[str]


# -- orders --------------------------------------------------------------------

class PlaceOrder(Strict):
    market: MarketSymbol
    side: Literal["buy", "sell"]
    type: Literal["limit", "market"] = "limit"
    quantity: Optional[Decimal] = None
    quote_amount: Optional[Decimal] = Field(default=None, description="market buys by quote amount")
    price: Optional[Decimal] = None
    time_in_force: Optional[Literal["GTC", "IOC", "FOK"]] = None
    post_only: StrictBool = False
    stp_mode: Optional[Literal["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"]] = None
    client_order_id: Optional[ClientOrderId] = None


MAX_BATCH_ORDERS = 50


class PlaceOrders(Strict):
    orders: list[PlaceOrder] = Field(
        min_length=1, max_length=MAX_BATCH_ORDERS,
        description=f"1 to {MAX_BATCH_ORDERS} orders, each as POST /orders takes it")


class AmendOrder(Strict):
    price: Optional[Decimal] = None
    quantity: Optional[Decimal] = Field(default=None, description="the new total quantity")


class Order(Out):
    order_id: int
    market: str
    client_order_id: Optional[str] = None
    side: Literal["buy", "sell"]
    type: Literal["limit", "market"]
    price: Optional[DecimalOut] = None
    quantity: Optional[DecimalOut] = None
    quote_amount: Optional[DecimalOut] = None
    time_in_force: Optional[str] = None
    post_only: bool
    stp_mode: Optional[str] = None
    status: str = Field(examples=["new", "partially_filled", "filled", "cancelled", "rejected"])
    reason: Optional[str] = None
    filled_quantity: DecimalOut
    filled_quote: DecimalOut
    created_at: int
    updated_at: int
    cancel_requested: Optional[bool] = None
    amend_requested: Optional[bool] = None


class OrderRefusal(Out):
    status: int = Field(description="the HTTP status POST /orders would answer", examples=[400])
    code: str = Field(examples=["INSUFFICIENT_FUNDS"])
    message: str
    field: Optional[str] = Field(default=None, description="the refused field, when one is")


class OrderOutcome(Out):
    order: Optional[Order] = Field(default=None, description="the accepted order")
    error: Optional[OrderRefusal] = Field(default=None, description="or why it was refused")


class OrderOutcomes(Out):
    results: list[OrderOutcome] = Field(description="one per order, in the request's order")


class OrderList(Out):
    orders: list[Order]


class OrdersQuery(Query):
    market: Optional[MarketSymbol] = None


class CancelAllQuery(Query):
    market: MarketSymbol


class CancelAll(Out):
    market: str
    open_orders: int = Field(description="open orders when the cancel was sent")
    cancel_requested: bool


class HistoryQuery(Query):
    cursor: Optional[Id] = None
    limit: Limit(500, 100)


class OrderHistory(Out):
    orders: list[Order]
    next_cursor: Optional[int] = None


class FillsQuery(Query):
    market: Optional[MarketSymbol] = None
    start: Optional[EpochMs] = None
    end: Optional[EpochMs] = None
    limit: Limit(1000, 100)


class FillFee(Out):
    asset: str = Field(description="what you received: the base asset when buying, the quote "
                                   "asset when selling")
    amount: DecimalOut
    settled: bool = Field(description="true: what the ledger charged you; false: not settled yet, "
                                      "what its settlement charges at your rate now (your fee "
                                      "tier's, or the market's schedule)")


class Fill(Out):
    trade_id: str
    market: str
    order_id: Optional[int] = None
    side: Literal["buy", "sell"]
    role: Literal["maker", "taker"]
    price: DecimalOut
    quantity: DecimalOut
    quote_quantity: DecimalOut
    executed_at: int
    fee: FillFee


class Fills(Out):
    fills: list[Fill]


# -- wallets -------------------------------------------------------------------

class Balance(Out):
    asset: str
    available: DecimalOut
    locked: DecimalOut


class Balances(Out):
    balances: list[Balance]


class PageQuery(Query):
    cursor: Optional[Id] = None
    limit: Limit(200, 50)


class LedgerEntry(Out):
    transaction_id: int
    type: str = Field(examples=["deposit", "trade", "withdrawal"])
    created_at: int
    available_delta: SignedDecimalOut
    locked_delta: SignedDecimalOut
    details: dict = Field(default_factory=dict, description="what the entry is about: txid, "
                          "address, market, side, role, fee, ... by type")


class Ledger(Out):
    asset: str
    entries: list[LedgerEntry]
    next_cursor: Optional[int] = None


class DepositAddress(Out):
    asset: str
    address: str
    created_at: int


class DepositsQuery(Query):
    asset: Optional[AssetCode] = None
    cursor: Optional[Id] = None
    limit: Limit(200, 50)


class Deposit(Out):
    transaction_id: int
    asset: str
    amount: DecimalOut
    txid: Optional[str] = None
    address: Optional[str] = None
    created_at: int


class Deposits(Out):
    deposits: list[Deposit]
    next_cursor: Optional[int] = Field(default=None, description="with asset only: the next "
                                       "ledger page (a page may hold fewer deposits than limit)")


class WithdrawalRequest(Strict):
    asset: AssetCode
    address: Annotated[str, Field(pattern=ADDRESS_PATTERN), BeforeValidator(_withdrawal_address)]
    amount: Decimal
    ref: Annotated[str, Field(pattern=REF_PATTERN, description="your idempotency reference"),
                   _grammar(_text_of(REF_PATTERN, 64))]


class Withdrawal(Out):
    withdrawal_id: int
    asset: str
    address: str
    amount: DecimalOut
    fee: Optional[DecimalOut] = None
    status: str = Field(examples=["pending", "approved", "sent", "rejected", "cancelled"])
    ref: Optional[str] = None
    txid: Optional[str] = None
    created_at: Optional[int] = None
    updated_at: Optional[int] = None


class WithdrawalsQuery(Query):
    limit: Limit(200, 50)


class Withdrawals(Out):
    withdrawals: list[Withdrawal]


# -- API keys ------------------------------------------------------------------

Permission = Literal["read", "trade", "withdraw"]


class ApiKeyRequest(Strict):
    label: Annotated[str, Field(pattern=LABEL_PATTERN), _grammar(_text_of(LABEL_PATTERN, 64))]
    permissions: list[Permission] = Field(default=["read"], min_length=1, max_length=3)
    ip_allowlist: Optional[list[Annotated[str, Field(min_length=2, max_length=43)]]] = \
        Field(default=None, max_length=32, description="IPs or CIDRs; withdraw keys need one")
    # Year 3000 at most: the users service turns it into a datetime (a later
    # one overflowed it: ValueError, a 500).
    expires_at: Optional[StrictInt] = Field(default=None, ge=0, le=MAX_EXPIRES_AT_MS)


class ApiKey(Out):
    key_id: str
    api_key: str
    label: str
    permissions: list[str]
    ip_allowlist: Optional[list[str]] = None
    expires_at: Optional[int] = None
    created_at: Optional[int] = None
    status: str = Field(examples=["active", "expired", "revoked"])


class ApiKeyCreated(ApiKey):
    secret: str = Field(description="shown once; sign requests with it (HMAC-SHA256)")


class ApiKeyList(Out):
    api_keys: list[ApiKey]


# -- conversions ---------------------------------------------------------------

def epoch_ms(value) -> Optional[int]:
    """Services answer times as epoch ms or ISO-8601 text; the API says ms."""
    if value is None or isinstance(value, int):
        return value
    return int(datetime.fromisoformat(value).timestamp() * 1000)
