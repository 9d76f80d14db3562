"""One strict grammar for amounts, integers and text, checked before any
arithmetic or storage, by every service and the gateway.

* A decimal is ASCII digits with at most one point: ``0.01``, ``30000``,
  ``.5`` and ``5.`` are refused (a digit on both sides of the point), as are
  signs, exponents, whitespace, underscores, other Unicode digits, NaN and
  Infinity. Its length is bounded (``MAX_DIGITS`` integer digits,
  ``MAX_SCALE`` decimals) so no input can make ``Decimal`` work for long.
  An ``int`` is accepted as a whole number; ``float`` and ``bool`` never are.
* Text has no control characters (C0, DEL, C1), is not empty, and is at most
  ``max_len`` characters; ids additionally match a pattern.

Each refusal is ``InvalidInput`` naming the field. Pure.
"""
from __future__ import annotations

import re
from decimal import Decimal

from services.common.errors import InvalidInput

MAX_DIGITS = 20          # integer part: 10**20 exceeds any amount, price or count here
MAX_SCALE = 18           # ETH has 18 decimals; nothing is finer
MAX_INT = 2 ** 63 - 1
# Longest decimal text read at all: room for trailing zeros beyond MAX_SCALE
# ("1.50000000000000000000" is exactly 1.5), short enough to cost nothing.
MAX_TEXT = 64

_DECIMAL = re.compile(r"[0-9]{1,%d}(?:\.[0-9]+)?" % MAX_DIGITS, re.ASCII)
# A user id: a Keycloak subject (UUID) or a test/system id of the same alphabet.
USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)
# A client's own order id (Binance's newClientOrderId alphabet).
CLIENT_ORDER_ID = re.compile(r"[A-Za-z0-9._:/-]{1,36}", re.ASCII)

_INTEGER = re.compile(r"[0-9]{1,19}", re.ASCII)
# C0, DEL, C1, and lone UTF-16 surrogates (a JSON "\\ud800" escape decodes to
# one; no database or log can store it).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def decimal(value, field: str, *, positive: bool = True, scale: int | None = None,
            max_value: Decimal | None = None) -> Decimal:
    """A non-negative (``positive``: strictly positive) exact decimal.

    ``scale``: at most this many decimals (off-grid amounts are refused,
    never rounded). ``max_value``: an inclusive upper bound."""
    if isinstance(value, bool) or isinstance(value, float):
        raise InvalidInput("INVALID_NUMBER",
                           f"{field} must be a decimal string, not {type(value).__name__}", field)
    if isinstance(value, int):
        if not 0 <= value <= MAX_INT:
            raise InvalidInput("INVALID_NUMBER", f"{field} is out of range", field)
        text = str(value)
    elif isinstance(value, str):
        text = value
    elif isinstance(value, Decimal) and value.is_finite():
        # A Decimal this grammar produced (a price or quantity read once
        # and passed on: every order's twice on its way to the engine's
        # grid) is taken as it is: unsigned, at most MAX_DIGITS integer
        # digits, and no more decimals than allowed even before trailing
        # zeros are stripped, no positive exponent (text never has one).
        # What it would print is grammar text that reads back as this very
        # Decimal, so the result is the one the text path gives.
        exponent = value.as_tuple().exponent
        if not value.is_signed() and value.adjusted() < MAX_DIGITS \
                and -min(MAX_SCALE, MAX_SCALE if scale is None else scale) <= exponent <= 0:
            return _bounded(value, field, positive, max_value)
        # Bounded before formatting: Decimal("1e10000000") would print ten
        # million digits.
        in_range = (value >= 0 and value.adjusted() < MAX_DIGITS
                    and -value.as_tuple().exponent < MAX_TEXT - MAX_DIGITS)
        text = format(value, "f") if in_range else "-"
    else:
        raise InvalidInput("INVALID_NUMBER", f"{field} must be a decimal string", field)
    if len(text) > MAX_TEXT or not _DECIMAL.fullmatch(text):
        raise InvalidInput("INVALID_NUMBER",
                           f"{field} must be digits with at most one decimal point "
                           f"(up to {MAX_DIGITS} digits and {MAX_SCALE} decimals), "
                           f"got {shown(value)}", field)
    # Decimals counted on the text (trailing zeros allowed): no arithmetic
    # that a long input could make expensive or overflow the context.
    decimals = min(MAX_SCALE, MAX_SCALE if scale is None else scale)
    if len(text.partition(".")[2].rstrip("0")) > decimals:
        raise InvalidInput("TOO_PRECISE", f"{field} has more than {decimals} decimals", field)
    return _bounded(Decimal(text), field, positive, max_value)


def _bounded(number: Decimal, field: str, positive: bool, max_value: Decimal | None) -> Decimal:
    if positive and number == 0:
        raise InvalidInput("NOT_POSITIVE", f"{field} must be greater than zero", field)
    if max_value is not None and number > max_value:
        raise InvalidInput("OUT_OF_RANGE", f"{field} must be at most {max_value}", field)
    return number


def optional_decimal(value, field: str, **kwargs) -> Decimal | None:
    return None if value is None else decimal(value, field, **kwargs)


def integer(value, field: str, *, minimum: int = 0, maximum: int = MAX_INT) -> int:
    """An int, or a string of ASCII digits, within ``[minimum, maximum]``."""
    if isinstance(value, bool):
        raise InvalidInput("INVALID_INTEGER", f"{field} must be an integer", field)
    if isinstance(value, str):
        if not _INTEGER.fullmatch(value):
            raise InvalidInput("INVALID_INTEGER", f"{field} must be an integer, got "
                               f"{shown(value)}", field)
        value = int(value)
    if not isinstance(value, int):
        raise InvalidInput("INVALID_INTEGER", f"{field} must be an integer", field)
    if not minimum <= value <= maximum:
        raise InvalidInput("OUT_OF_RANGE", f"{field} must be from {minimum} to {maximum}", field)
    return value


def text(value, field: str, *, max_len: int = 64, pattern: re.Pattern | None = None) -> str:
    """A non-empty string of at most ``max_len`` characters without control
    characters (and matching ``pattern`` when given)."""
    if not isinstance(value, str):
        raise InvalidInput("INVALID_TEXT", f"{field} must be a string", field)
    if not value or len(value) > max_len:
        raise InvalidInput("INVALID_TEXT", f"{field} must be 1 to {max_len} characters", field)
    if _CONTROL.search(value):
        raise InvalidInput("INVALID_TEXT", f"{field} must not contain control characters", field)
    if pattern is not None and not pattern.fullmatch(value):
        raise InvalidInput("INVALID_TEXT", f"{field} has characters that are not allowed "
                           f"({pattern.pattern})", field)
    return value


# What no database, log line or message can hold, in any argument.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def storable(value, field: str) -> None:
    """Refuse (INVALID_TEXT) a JSON value (strings, numbers, lists, dicts)
    with a string, key included, holding NUL or a lone UTF-16 surrogate: a
    JSON ``"\\ud800"`` or ``"\\u0000"`` decodes to one, and PostgreSQL,
    UTF-8 logs and Keycloak fail on it mid-request instead of refusing it.
    An RPC whose worker failed uncoded, with arguments whose JSON may hold
    one (``may_decode_to_unstorable``), is answered with this refusal
    (services.common.deadlines)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                raise InvalidInput("INVALID_TEXT", f"{field} must not contain NUL or lone "
                                   "surrogate characters", field)
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)


# The JSON escapes that decode to NUL or a UTF-16 surrogate: JSON text holds
# such a character no other way (a raw one is refused by the decoder).
_UNSTORABLE_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


def may_decode_to_unstorable(raw_json: bytes | str) -> bool:
    """Whether JSON text has an escape of NUL or a surrogate: a scan in C,
    so ``storable``'s walk (about 1 us an item) runs only for such text
    (a surrogate pair, an emoji written as escapes, comes here too)."""
    if isinstance(raw_json, str):
        raw_json = raw_json.encode("utf-8", "surrogatepass")
    return _UNSTORABLE_ESCAPE.search(raw_json) is not None


def has_control_characters(value: str) -> bool:
    return _CONTROL.search(value) is not None


def optional_text(value, field: str, **kwargs) -> str | None:
    return None if value is None else text(value, field, **kwargs)


def choice(value, field: str, allowed, default=None):
    if value is None:
        return default
    if not isinstance(value, str) or value not in allowed:
        raise InvalidInput("INVALID_CHOICE", f"{field} must be one of {', '.join(allowed)}", field)
    return value


def shown(value) -> str:
    """``repr`` of an input, cut short for a message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
