"""Plain values at the matching engine's boundary.

Everything a caller hands to the engine or receives from it lives here:

* ``MarketConfig`` -- one market's rules, with the decimal <-> integer
  conversions (ticks, lots, notional units) that happen at the boundary;
* the commands (small ``NamedTuple`` values, journal-friendly through
  ``command_to_dict`` / ``command_from_dict``);
* the event kinds, their field lists and ``event_to_dict``;
* the stable reason codes and the typed errors.

Units inside the engine are plain ints:

* price    -- ticks: ``price = ticks * tick_size``;
* quantity -- lots:  ``quantity = lots * lot_size``;
* notional -- units of ``tick_size * lot_size`` quote, so ``ticks * lots`` is
  an exact notional and a quote amount is an int too.

Decimal is used only in this module, to convert at the boundary. No floats.
"""

import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Hashable, NamedTuple, Optional

# ---------------------------------------------------------------- vocabulary

BUY = "buy"
SELL = "sell"
SIDES = (BUY, SELL)

LIMIT = "limit"
MARKET = "market"

GTC = "GTC"
IOC = "IOC"
FOK = "FOK"

STP_NONE = "NONE"
EXPIRE_TAKER = "EXPIRE_TAKER"
EXPIRE_MAKER = "EXPIRE_MAKER"
EXPIRE_BOTH = "EXPIRE_BOTH"
STP_MODES = (STP_NONE, EXPIRE_TAKER, EXPIRE_MAKER, EXPIRE_BOTH)

# Prices are int64 tick counts: 1 .. MAX_PRICE_TICKS.
MAX_PRICE_TICKS = (1 << 63) - 1

# Order-done statuses and their reasons.
FILLED = "filled"
CANCELLED = "cancelled"
EXPIRED = "expired"
DONE_CANCEL = "CANCEL"                # cancel command
DONE_CANCEL_ALL = "CANCEL_ALL"        # cancel-all command
DONE_TIME_IN_FORCE = "TIME_IN_FORCE"  # IOC / FOK / market remainder, nothing left to take
DONE_SELF_TRADE = "SELF_TRADE"        # self-trade prevention


class Reason:
    """Stable rejection codes (part of the public contract)."""

    MARKET_HALTED = "MARKET_HALTED"
    DUPLICATE_ORDER_ID = "DUPLICATE_ORDER_ID"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    INVALID_SIDE = "INVALID_SIDE"
    INVALID_ORDER_TYPE = "INVALID_ORDER_TYPE"
    INVALID_TIME_IN_FORCE = "INVALID_TIME_IN_FORCE"
    INVALID_STP_MODE = "INVALID_STP_MODE"
    INVALID_POST_ONLY = "INVALID_POST_ONLY"
    INVALID_PRICE = "INVALID_PRICE"
    INVALID_QUANTITY = "INVALID_QUANTITY"
    QTY_BELOW_MIN = "QTY_BELOW_MIN"
    QTY_ABOVE_MAX = "QTY_ABOVE_MAX"
    QTY_NOT_ABOVE_FILLED = "QTY_NOT_ABOVE_FILLED"
    NOTIONAL_BELOW_MIN = "NOTIONAL_BELOW_MIN"
    PRICE_OUT_OF_BAND = "PRICE_OUT_OF_BAND"
    TOO_MANY_OPEN_ORDERS = "TOO_MANY_OPEN_ORDERS"
    POST_ONLY_WOULD_TAKE = "POST_ONLY_WOULD_TAKE"
    FOK_NOT_FILLABLE = "FOK_NOT_FILLABLE"
    NO_LIQUIDITY = "NO_LIQUIDITY"
    INVALID_LIMITS = "INVALID_LIMITS"


# ---------------------------------------------------------------- errors


class MatchingError(Exception):
    """Base of the errors raised at the matching boundary; ``code`` is stable."""

    code = "MATCHING_ERROR"

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


class InvalidValue(MatchingError, ValueError):
    """A decimal value that cannot become ticks / lots / notional units.

    Codes: ``INVALID_NUMBER`` (non-numeric, NaN, Infinity, float, bool),
    ``NOT_POSITIVE``, ``PRICE_OFF_TICK``, ``QTY_OFF_LOT``, ``AMOUNT_OFF_GRID``.
    """


class ConfigError(MatchingError, ValueError):
    """An invalid market configuration (code ``INVALID_CONFIG``)."""

    def __init__(self, message: str):
        super().__init__("INVALID_CONFIG", message)


class InvalidCommand(MatchingError, ValueError):
    """A command dict that does not describe a known command (code ``INVALID_COMMAND``)."""

    def __init__(self, message: str):
        super().__init__("INVALID_COMMAND", message)


# ---------------------------------------------------------------- decimals


def to_decimal(value: Any) -> Decimal:
    """A non-negative decimal in the one strict grammar (services.common.grammar:
    ASCII digits and one point, bounded length; no sign, exponent, blank,
    NaN, Infinity, float or bool), as ``Decimal``; ``InvalidValue``
    (``INVALID_NUMBER``) otherwise."""
    # Imported here: the grammar's coded errors register with Nameko, and
    # the engine, which imports this module, must import nothing of Nameko.
    from services.common import grammar
    from services.common.errors import InvalidInput
    try:
        return grammar.decimal(value, "value", positive=False)
    except InvalidInput as exc:
        raise InvalidValue("INVALID_NUMBER", exc.message) from None


def _ratio(d: Decimal) -> tuple[int, int]:
    return d.as_integer_ratio()


def _to_units(value: Any, unit: Decimal, off_grid_code: str) -> int:
    """Exact ``value / unit`` as a positive int, or InvalidValue."""
    d = to_decimal(value)
    if d <= 0:
        raise InvalidValue("NOT_POSITIVE", f"{value!r} must be positive")
    n, m = _ratio(d)
    un, um = _ratio(unit)
    # value / unit = (n / m) / (un / um) = n * um / (m * un)
    num, den = n * um, m * un
    if num % den:
        raise InvalidValue(off_grid_code, f"{value!r} is not a multiple of {unit}")
    return num // den


def _from_units(units: int, unit: Decimal) -> str:
    """``units * unit`` as a plain decimal string with the unit's number of decimals."""
    if type(units) is not int:
        raise InvalidValue("INVALID_NUMBER", f"{units!r} is not an int")
    exponent = unit.as_tuple().exponent
    places = -exponent if exponent < 0 else 0
    n, m = _ratio(unit)  # m is a power of ten dividing 10**places
    scaled = units * n * (10**places // m)  # value * 10**places, an exact int
    sign = "-" if scaled < 0 else ""
    digits = str(abs(scaled)).rjust(places + 1, "0")
    if places:
        return f"{sign}{digits[:-places]}.{digits[-places:]}"
    return f"{sign}{digits}"


# ---------------------------------------------------------------- market config


def _positive_decimal(name: str, value: Any) -> Decimal:
    try:
        d = to_decimal(value)
    except InvalidValue as exc:
        raise ConfigError(f"{name}: {exc}") from None
    if d <= 0:
        raise ConfigError(f"{name} must be positive, got {value!r}")
    return d


@dataclass(frozen=True)
class MarketConfig:
    """One market's rules. Decimal fields are strings (``"0.01"``), as on the wire.

    * ``min_quantity`` / ``max_quantity`` -- base quantity bounds of an order
      (``None``: one lot / unbounded); must lie on the lot grid.
    * ``min_notional`` -- quote; checked for limit orders (price x quantity)
      and for market buys by quote amount; must lie on the notional grid.
    * ``price_band_percent`` -- a limit price farther than this percentage from
      the reference price is rejected (``None``: no band; no reference price
      yet: no check).
    * ``max_open_orders`` -- resting orders per user in this market (``None``: unlimited).
    * ``default_stp`` -- self-trade prevention mode for orders that name none.
    * ``halted`` -- the initial state of a new engine.

    The derived integer fields (``min_lots``, ``max_lots``, ``min_notional_units``,
    ``band_num``/``band_den``) are what the engine uses.
    """

    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: str
    lot_size: str
    min_quantity: Optional[str] = None
    max_quantity: Optional[str] = None
    min_notional: Optional[str] = None
    price_band_percent: Optional[str] = None
    max_open_orders: Optional[int] = None
    default_stp: str = STP_NONE
    halted: bool = False

    tick: Decimal = field(init=False, repr=False, compare=False)
    lot: Decimal = field(init=False, repr=False, compare=False)
    notional_unit: Decimal = field(init=False, repr=False, compare=False)
    min_lots: int = field(init=False, repr=False, compare=False)
    max_lots: Optional[int] = field(init=False, repr=False, compare=False)
    min_notional_units: int = field(init=False, repr=False, compare=False)
    band_num: Optional[int] = field(init=False, repr=False, compare=False)
    band_den: Optional[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if not isinstance(self.symbol, str) or not self.symbol:
            raise ConfigError("symbol must be a non-empty string")
        tick = _positive_decimal("tick_size", self.tick_size)
        lot = _positive_decimal("lot_size", self.lot_size)
        put("tick", tick)
        put("lot", lot)
        put("notional_unit", tick * lot)
        try:
            put("min_lots", 1 if self.min_quantity is None else self.qty_to_lots(self.min_quantity))
            put("max_lots", None if self.max_quantity is None else self.qty_to_lots(self.max_quantity))
            put(
                "min_notional_units",
                0 if self.min_notional is None else self.quote_to_units(self.min_notional),
            )
        except InvalidValue as exc:
            raise ConfigError(str(exc)) from None
        if self.max_lots is not None and self.max_lots < self.min_lots:
            raise ConfigError("max_quantity is below min_quantity")
        if self.price_band_percent is None:
            put("band_num", None)
            put("band_den", None)
        else:
            band = _positive_decimal("price_band_percent", self.price_band_percent)
            num, den = _ratio(band)
            put("band_num", num)
            put("band_den", den)
        if self.max_open_orders is not None and (
            type(self.max_open_orders) is not int or self.max_open_orders <= 0
        ):
            raise ConfigError("max_open_orders must be a positive int or None")
        if self.default_stp not in STP_MODES:
            raise ConfigError(f"default_stp must be one of {STP_MODES}")
        if type(self.halted) is not bool:
            raise ConfigError("halted must be a bool")

    # -- conversions (raise InvalidValue) ---------------------------------

    def price_to_ticks(self, price: Any) -> int:
        """Decimal price -> ticks. Off the tick grid: ``PRICE_OFF_TICK``."""
        return _to_units(price, self.tick, "PRICE_OFF_TICK")

    def ticks_to_price(self, ticks: int) -> str:
        return _from_units(ticks, self.tick)

    def qty_to_lots(self, quantity: Any) -> int:
        """Decimal base quantity -> lots. Off the lot grid: ``QTY_OFF_LOT``."""
        return _to_units(quantity, self.lot, "QTY_OFF_LOT")

    def lots_to_qty(self, lots: int) -> str:
        return _from_units(lots, self.lot)

    def quote_to_units(self, amount: Any) -> int:
        """Decimal quote amount -> notional units (``tick_size * lot_size``).

        Off that grid: ``AMOUNT_OFF_GRID`` (never rounded silently).
        """
        return _to_units(amount, self.notional_unit, "AMOUNT_OFF_GRID")

    def units_to_quote(self, units: int) -> str:
        return _from_units(units, self.notional_unit)

    def with_limits(self, limits: "Configure") -> "MarketConfig":
        """This market with ``limits`` in place of its own (symbol, assets,
        tick and lot never change: resting orders are priced on them).
        ConfigError when the result is not a valid market."""
        try:
            return dataclasses.replace(self, **limits._asdict())
        except TypeError as exc:  # a field of the wrong kind, e.g. an unhashable value
            raise ConfigError(str(exc)) from None

    # -- wire form ----------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "symbol": self.symbol,
            "base_asset": self.base_asset,
            "quote_asset": self.quote_asset,
            "tick_size": self.tick_size,
            "lot_size": self.lot_size,
            "min_quantity": self.min_quantity,
            "max_quantity": self.max_quantity,
            "min_notional": self.min_notional,
            "price_band_percent": self.price_band_percent,
            "max_open_orders": self.max_open_orders,
            "default_stp": self.default_stp,
            "halted": self.halted,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "MarketConfig":
        return cls(**data)


# ---------------------------------------------------------------- commands
#
# Commands are NamedTuples of plain values: ints (ticks, lots, notional units,
# order ids), strings and the caller's user ids. Build them with ints directly
# or from decimal strings with ``place_order_from_decimals``.


class PlaceOrder(NamedTuple):
    """A new order.

    * limit: ``price`` (ticks) and ``quantity`` (lots); ``time_in_force`` GTC
      (default), IOC or FOK; ``post_only`` only with GTC.
    * market: no price; either ``quantity`` (lots, IOC default or FOK) or, for a
      buy only, ``quote_amount`` (notional units to spend, IOC).
    * ``stp``: one of ``STP_MODES``; ``None`` takes the market default.
    """

    order_id: int
    user_id: Hashable
    side: str
    order_type: str = LIMIT
    price: Optional[int] = None
    quantity: Optional[int] = None
    quote_amount: Optional[int] = None
    time_in_force: Optional[str] = None
    post_only: bool = False
    stp: Optional[str] = None


class CancelOrder(NamedTuple):
    """Cancel one order; with ``user_id`` set, only if it is that user's order."""

    order_id: int
    user_id: Hashable = None


class CancelAll(NamedTuple):
    """Cancel every open order of one user in this market (ascending order id)."""

    user_id: Hashable


class AmendOrder(NamedTuple):
    """Change an open order's price and/or total quantity (``None``: unchanged).

    ``quantity`` is the new *total* quantity (filled included), so a fill racing
    the amend cannot grow the exposure. Same price and a lower or equal quantity
    keeps time priority; a new price or a higher quantity loses it, and a new
    price that crosses the book trades at once like a new limit order.
    """

    order_id: int
    user_id: Hashable = None
    price: Optional[int] = None
    quantity: Optional[int] = None


class Halt(NamedTuple):
    """Stop accepting new orders and amends; cancels still work."""


class Resume(NamedTuple):
    """Accept new orders again."""


class SetReferencePrice(NamedTuple):
    """Set the reference price (ticks) of the price band; trades also move it."""

    price: int


class Configure(NamedTuple):
    """Replace the market's limits from the next command on: the fields the
    registry lets an operator change (services/registry/listing.py MUTABLE,
    those the engine checks), all of them, so applying one twice is harmless.
    Orders already resting stay, as on any exchange when limits tighten.
    The fields repeat MarketConfig's limits on purpose: they are a journaled
    command's schema (docs/matching-engine.md), which replays must read as
    written; ``MarketConfig.with_limits`` refuses a name MarketConfig lacks."""

    min_quantity: Optional[str] = None
    max_quantity: Optional[str] = None
    min_notional: Optional[str] = None
    price_band_percent: Optional[str] = None
    max_open_orders: Optional[int] = None
    default_stp: str = STP_NONE

    @classmethod
    def of(cls, config: "MarketConfig") -> "Configure":
        """The limits of ``config``, as a command."""
        return cls(**{name: getattr(config, name) for name in cls._fields})


COMMAND_TYPES = {
    "place_order": PlaceOrder,
    "cancel_order": CancelOrder,
    "cancel_all": CancelAll,
    "amend_order": AmendOrder,
    "halt": Halt,
    "resume": Resume,
    "set_reference_price": SetReferencePrice,
    "configure": Configure,
}
COMMAND_NAMES = {cls: name for name, cls in COMMAND_TYPES.items()}


def command_to_dict(command: tuple) -> dict:
    """``{"type": "place_order", "order_id": ..., ...}`` -- JSON-serialisable."""
    data = command._asdict()
    data["type"] = COMMAND_NAMES[type(command)]
    return data


def command_from_dict(data: dict) -> tuple:
    """Inverse of ``command_to_dict``; unknown type or fields raise InvalidCommand."""
    try:
        cls = COMMAND_TYPES[data["type"]]
    except (KeyError, TypeError):
        raise InvalidCommand(f"unknown command {data!r}") from None
    fields = {k: v for k, v in data.items() if k != "type"}
    unknown = set(fields) - set(cls._fields)
    if unknown:
        raise InvalidCommand(f"{data['type']}: unknown fields {sorted(unknown)}")
    try:
        return cls(**fields)
    except TypeError as exc:
        raise InvalidCommand(f"{data['type']}: {exc}") from None


def place_order_from_decimals(
    config: MarketConfig,
    order_id: int,
    user_id: Hashable,
    side: str,
    order_type: str = LIMIT,
    price: Any = None,
    quantity: Any = None,
    quote_amount: Any = None,
    time_in_force: Optional[str] = None,
    post_only: bool = False,
    stp: Optional[str] = None,
) -> PlaceOrder:
    """Build a PlaceOrder from decimal strings; raises InvalidValue off the grid."""
    return PlaceOrder(
        order_id,
        user_id,
        side,
        order_type,
        None if price is None else config.price_to_ticks(price),
        None if quantity is None else config.qty_to_lots(quantity),
        None if quote_amount is None else config.quote_to_units(quote_amount),
        time_in_force,
        post_only,
        stp,
    )


def static_rejection(config: MarketConfig, place: PlaceOrder) -> Optional[str]:
    """The reason the engine would refuse ``place`` on its face -- the market's
    grid-independent limits, which need no book state (not the price band,
    which moves with the reference price) -- or None. Callers check this
    before holding funds or journaling; the engine checks again."""
    price, qty, quote = place.price, place.quantity, place.quote_amount
    if price is not None and not 0 < price <= MAX_PRICE_TICKS:
        return Reason.INVALID_PRICE
    if qty is not None:
        if not 0 < qty <= MAX_PRICE_TICKS:
            return Reason.INVALID_QUANTITY
        if qty < config.min_lots:
            return Reason.QTY_BELOW_MIN
        if config.max_lots is not None and qty > config.max_lots:
            return Reason.QTY_ABOVE_MAX
        if price is not None and price * qty < config.min_notional_units:
            return Reason.NOTIONAL_BELOW_MIN
    if quote is not None:
        if not 0 < quote <= MAX_PRICE_TICKS:
            return Reason.INVALID_QUANTITY
        if quote < config.min_notional_units:
            return Reason.NOTIONAL_BELOW_MIN
    return None


# ---------------------------------------------------------------- events
#
# In the engine an event is a tuple ``(kind, seq, *fields)``; ``seq`` is the
# sequence number of the command that produced it. ``event_to_dict`` gives the
# stable wire form: ``{"type": kind, "market": symbol, "seq": seq, **fields}``.

COMMAND_ACCEPTED = "command_accepted"
COMMAND_REJECTED = "command_rejected"
TRADE_EXECUTED = "trade_executed"
ORDER_DONE = "order_done"
ORDER_AMENDED = "order_amended"
BOOK_LEVEL_CHANGED = "book_level_changed"
MARKET_STATUS_CHANGED = "market_status_changed"
REFERENCE_PRICE_SET = "reference_price_set"

EVENT_FIELDS = {
    COMMAND_ACCEPTED: ("command", "order_id", "user_id"),
    COMMAND_REJECTED: ("command", "order_id", "user_id", "reason"),
    TRADE_EXECUTED: (
        "trade_id",
        "price",
        "quantity",
        "taker_side",
        "maker_order_id",
        "maker_user_id",
        "taker_order_id",
        "taker_user_id",
    ),
    ORDER_DONE: (
        "order_id",
        "user_id",
        "side",
        "status",
        "reason",
        "filled_quantity",
        "remaining_quantity",
        "remaining_quote",
    ),
    ORDER_AMENDED: ("order_id", "user_id", "side", "price", "quantity", "remaining_quantity", "priority_kept"),
    BOOK_LEVEL_CHANGED: ("side", "price", "quantity"),
    MARKET_STATUS_CHANGED: ("halted",),
    REFERENCE_PRICE_SET: ("price",),
}


def refused_until_placed(events: list) -> bool:
    """Whether a command's events refuse it only because its order is not on
    the book: a cancel or an amend rejected ``UNKNOWN_ORDER``.

    Such a refusal is not final for delivery. A publisher that resends from
    its first unconfirmed message (the orders relay after a nack) can deliver
    the cancel of an order before the order's place, and then both again: a
    host that deduplicates by command id must apply the later copy instead of
    skipping it as seen, or the order the user cancelled rests on the book.
    Applying a copy again is safe: the order is either still unknown (refused
    again) or now open, which is the state the command was sent against. The
    journal keeps every copy in order, so a replay gives the same events."""
    return (len(events) == 1 and events[0][0] == COMMAND_REJECTED
            and events[0][2] in ("cancel_order", "amend_order")
            and events[0][5] == Reason.UNKNOWN_ORDER)


def event_to_dict(event: tuple, market: str) -> dict:
    """The wire form of one event tuple (ints stay ints: ticks, lots, units)."""
    kind = event[0]
    data = {"type": kind, "market": market, "seq": event[1]}
    data.update(zip(EVENT_FIELDS[kind], event[2:]))
    return data
