"""Exact amounts: decimal strings on the wire, integer minor units inside.

* Wire form: a plain decimal string in whole units of the asset, ``"0.015"``
  (an ``int`` is accepted as whole units, a ``Decimal`` from in-process
  callers too). Floats, bools, NaN, Infinity, exponents (``"1e3"``), signs,
  blanks and anything with more decimals than the asset has are refused --
  never rounded. Trailing zeros beyond the scale are fine: ``"1.500000000"``
  BTC is exactly 1.5 BTC.
* Inside: ``int`` minor units (10**-scale of the asset), stored as
  NUMERIC(78,0).
* Output: ``format_amount`` gives the asset's full scale, ``"1.50000000"``.

Pure: standard library only.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.common import grammar
from services.common.errors import InvalidInput as GrammarRefusal
from services.wallets.assets import Asset
from services.wallets.errors import AmountTooPrecise, InvalidAmount

# The largest amount one request may carry, in minor units. 10**36 minor units
# is 10**18 ETH: far above any supply, far below NUMERIC(78,0)'s 10**78.
MAX_AMOUNT_MINOR = 10 ** 36


def parse_amount(asset: Asset, value: Any, *, signed: bool = False) -> int:
    """``value`` (whole units) as exact minor units of ``asset``.

    Positive unless ``signed`` (then non-zero, either sign). Raises
    InvalidAmount or AmountTooPrecise.
    """
    if isinstance(value, str):
        minor = _parse_text(asset, value)
    elif isinstance(value, bool) or isinstance(value, float):
        raise InvalidAmount(f"{value!r}: amounts are decimal strings, not {type(value).__name__}")
    elif isinstance(value, int):
        if abs(value) >= MAX_AMOUNT_MINOR:
            raise InvalidAmount(f"{value} is above the maximum amount")
        minor = value * asset.unit
    elif isinstance(value, Decimal):
        minor = _parse_decimal(asset, value)
    else:
        raise InvalidAmount(f"{value!r} is not a decimal amount")
    if abs(minor) >= MAX_AMOUNT_MINOR:
        raise InvalidAmount(f"{value!r} is above the maximum amount")
    if minor == 0:
        raise InvalidAmount(f"{value!r}: the amount must not be zero")
    if minor < 0 and not signed:
        raise InvalidAmount(f"{value!r}: the amount must be positive")
    return minor


def _plain(text: str, scale: int, field: str) -> str:
    """``text`` in the one strict grammar (services.common.grammar), with at
    most ``scale`` decimals; wallets' own codes for the refusals."""
    try:
        grammar.decimal(text, field, positive=False, scale=scale)
    except GrammarRefusal as exc:
        if exc.code == "TOO_PRECISE":
            raise AmountTooPrecise(f"{grammar.shown(text)} has more than {scale} decimals") \
                from None
        raise InvalidAmount(f"{field} {grammar.shown(text)} is not a plain decimal number") \
            from None
    return text


def _parse_text(asset: Asset, text: str) -> int:
    sign, body = ("-", text[1:]) if text.startswith("-") else ("", text)
    whole, _, fraction = _plain(body, asset.scale, "amount").partition(".")
    fraction = fraction.rstrip("0")
    minor = int(whole) * asset.unit + int(fraction.ljust(asset.scale, "0") or "0")
    return -minor if sign else minor


def _parse_decimal(asset: Asset, value: Decimal) -> int:
    if not value.is_finite():
        raise InvalidAmount(f"{value!r} is not finite")
    if value.adjusted() > 40:
        raise InvalidAmount(f"{value!r} is above the maximum amount")
    numerator, denominator = value.as_integer_ratio()
    scaled, remainder = divmod(numerator * asset.unit, denominator)
    if remainder:
        raise AmountTooPrecise(f"{value} has more than {asset.scale} decimals ({asset.code})")
    return scaled


def format_amount(asset: Asset, minor: int) -> str:
    """Minor units as a decimal string with the asset's full scale."""
    sign = "-" if minor < 0 else ""
    digits = str(abs(minor)).rjust(asset.scale + 1, "0")
    if asset.scale == 0:
        return sign + digits
    return f"{sign}{digits[:-asset.scale]}.{digits[-asset.scale:]}"


# ---------------------------------------------------------------- prices



def parse_price(value: Any) -> tuple[int, int]:
    """A positive decimal price as an exact fraction ``(numerator, 10**decimals)``.

    Same refusals as amounts (floats, NaN, signs, exponents, zero).
    """
    if isinstance(value, str):
        try:
            whole, _, fraction = _plain(value, grammar.MAX_SCALE, "price").partition(".")
        except AmountTooPrecise as exc:
            raise InvalidAmount(f"price: {exc.detail}") from None
        fraction = fraction.rstrip("0")
        numerator, denominator = int(whole + fraction), 10 ** len(fraction)
    elif isinstance(value, int) and not isinstance(value, bool) and value < 10 ** 30:
        numerator, denominator = value, 1
    elif isinstance(value, Decimal) and value.is_finite() and value.adjusted() < 30:
        sign, digits, exponent = value.as_tuple()
        magnitude = int("".join(map(str, digits)) or "0")
        numerator = (-magnitude if sign else magnitude) * 10 ** max(exponent, 0)
        denominator = 10 ** max(-exponent, 0)
        while denominator > 1 and numerator % 10 == 0:
            numerator, denominator = numerator // 10, denominator // 10
    else:
        raise InvalidAmount(f"price {value!r} is not a decimal string")
    if numerator <= 0:
        raise InvalidAmount(f"price {value!r} must be positive")
    return numerator, denominator


def format_price(numerator: int, denominator: int) -> str:
    """The canonical string of a price fraction whose denominator is a power of ten."""
    places = len(str(denominator)) - 1
    digits = str(numerator).rjust(places + 1, "0")
    return f"{digits[:-places]}.{digits[-places:]}" if places else digits
