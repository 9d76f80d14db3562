"""The one strict grammar: every hostile value of issue 11 is refused with a
coded error naming the field, and cheaply (no input makes Decimal or a regex
work for long: the length is checked first)."""
from decimal import Decimal

import pytest

from services.common import grammar
from services.common.errors import CodedError, InvalidInput, code_of

MEGABYTE_OF_DIGITS = "9" * 1_000_000


@pytest.mark.parametrize("value, expected", [
    ("0.01", Decimal("0.01")),
    ("30000", Decimal("30000")),
    ("1.500000000", Decimal("1.5")),
    (7, Decimal(7)),
    (Decimal("2.5"), Decimal("2.5")),
    ("9" * 20 + "." + "9" * 18, Decimal("9" * 20 + "." + "9" * 18)),
    ("1." + "0" * 40, Decimal(1)),
])
def test_plain_decimals_are_read_exactly(value, expected):
    assert grammar.decimal(value, "price") == expected


@pytest.mark.parametrize("value, code", [
    ("1e10000000", "INVALID_NUMBER"),       # froze orders for 6 s before
    ("1E5", "INVALID_NUMBER"),
    (MEGABYTE_OF_DIGITS, "INVALID_NUMBER"),  # 27 s before
    ("١", "INVALID_NUMBER"),                # Arabic-Indic one: placed a 1 BTC order before
    ("٣٠٠٠٠", "INVALID_NUMBER"),
    ("１", "INVALID_NUMBER"),                # fullwidth one
    ("  0.01 ", "INVALID_NUMBER"),
    ("0.01\n", "INVALID_NUMBER"),
    ("1_000", "INVALID_NUMBER"),
    ("1" * 40, "INVALID_NUMBER"),           # a 40-digit price
    ("1\x00", "INVALID_NUMBER"),
    ("-1", "INVALID_NUMBER"),
    ("+1", "INVALID_NUMBER"),
    ("NaN", "INVALID_NUMBER"),
    ("Infinity", "INVALID_NUMBER"),
    (".5", "INVALID_NUMBER"),
    ("5.", "INVALID_NUMBER"),
    ("1.2.3", "INVALID_NUMBER"),
    ("", "INVALID_NUMBER"),
    ("0." + "0" * 19 + "1", "TOO_PRECISE"),  # beyond MAX_SCALE
    ("1." + "0" * 70, "INVALID_NUMBER"),    # beyond MAX_TEXT
    (0.5, "INVALID_NUMBER"),
    (True, "INVALID_NUMBER"),
    (None, "INVALID_NUMBER"),
    ([1], "INVALID_NUMBER"),
    ({"v": 1}, "INVALID_NUMBER"),
    (10 ** 30, "INVALID_NUMBER"),
    (-1, "INVALID_NUMBER"),
    (Decimal("1e10000000"), "INVALID_NUMBER"),
    (Decimal("-1"), "INVALID_NUMBER"),
    (Decimal("NaN"), "INVALID_NUMBER"),
    (Decimal("1e-30"), "TOO_PRECISE"),
    (Decimal("1e-300"), "INVALID_NUMBER"),
    ("0", "NOT_POSITIVE"),
    ("0.000", "NOT_POSITIVE"),
])
def test_hostile_decimals_are_refused_naming_the_field(value, code):
    with pytest.raises(InvalidInput) as raised:
        grammar.decimal(value, "price")
    assert (raised.value.code, raised.value.field) == (code, "price")
    assert code_of(raised.value) == code
    assert isinstance(raised.value, CodedError)
    assert len(str(raised.value)) < 300, "the refusal does not echo a huge input"


def test_scale_and_upper_bound_are_checked_on_the_text():
    assert grammar.decimal("1.2300", "quantity", scale=2) == Decimal("1.23")
    with pytest.raises(InvalidInput) as raised:
        grammar.decimal("1.231", "quantity", scale=2)
    assert raised.value.code == "TOO_PRECISE"
    with pytest.raises(InvalidInput) as raised:
        grammar.decimal("101", "quantity", max_value=Decimal(100))
    assert raised.value.code == "OUT_OF_RANGE"
    assert grammar.decimal("0", "fee", positive=False) == 0
    assert grammar.optional_decimal(None, "fee") is None



def _outcome(value, **limits):
    try:
        number = grammar.decimal(value, "price", **limits)
    except InvalidInput as exc:
        return exc.code
    return number, number.as_tuple()


@pytest.mark.parametrize("text", [
    "0", "0.000", "1", "0.01", "99.99", "30000", "1.500000000", "0." + "0" * 17 + "1",
    "1." + "0" * 18, "1." + "0" * 19, "1." + "0" * 40, "9" * 20, "9" * 20 + "." + "9" * 18,
])
@pytest.mark.parametrize("limits", [{}, {"scale": 2}, {"scale": 0}, {"positive": False},
                                    {"max_value": Decimal(100)}])
def test_a_decimal_it_read_reads_back_as_its_text_does(text, limits):
    """A Decimal the grammar produced is taken as it is (a price or quantity
    is read once and passed on): the same value and digits, or the same
    refusal, as the text it came from."""
    assert _outcome(Decimal(text), **limits) == _outcome(text, **limits)


@pytest.mark.parametrize("value", [
    Decimal("-0"), Decimal("-0.00"), Decimal("1E+3"), Decimal("1E-19"), Decimal("5E-19"),
    Decimal("1" * 21), Decimal("1.50000000000000000000"), Decimal("1e10000000"),
])
def test_other_decimals_are_judged_by_what_they_print(value):
    """Signed zeros, exponents and too many digits take the text path: the
    outcome is the one of their printed form."""
    printed = format(value, "f") if value.adjusted() < 40 else "-"
    assert _outcome(value) == _outcome(printed)

@pytest.mark.parametrize("value", [
    10 ** 30, -1, "1e3", "١", " 1", "1_0", "9" * 20, MEGABYTE_OF_DIGITS, 1.0, True, None, "",
])
def test_hostile_integers_are_refused(value):
    with pytest.raises(InvalidInput) as raised:
        grammar.integer(value, "expires_at")
    assert raised.value.field == "expires_at"


def test_integers_within_bounds():
    assert grammar.integer("42", "limit") == 42
    assert grammar.integer(2 ** 63 - 1, "cursor") == 2 ** 63 - 1
    with pytest.raises(InvalidInput) as raised:
        grammar.integer(0, "limit", minimum=1, maximum=500)
    assert raised.value.code == "OUT_OF_RANGE"


@pytest.mark.parametrize("value", [
    "ab\x00c",          # NUL: reached PostgreSQL as DataError before
    "\x00",
    "tab\there",
    "line\nbreak",
    "del\x7f",
    "c1\x85",
    "lone \ud800 surrogate",
    "",
    "x" * 65,
    MEGABYTE_OF_DIGITS,
    42,
    None,
    b"bytes",
])
def test_hostile_text_is_refused(value):
    with pytest.raises(InvalidInput) as raised:
        grammar.text(value, "client_order_id")
    assert (raised.value.code, raised.value.field) == ("INVALID_TEXT", "client_order_id")


def test_text_keeps_printable_unicode_and_applies_the_pattern():
    assert grammar.text("Ünïcødé label ✓", "label") == "Ünïcødé label ✓"
    import re
    with pytest.raises(InvalidInput):
        grammar.text("a b", "id", pattern=re.compile(r"[a-z]+"))
    assert grammar.optional_text(None, "id") is None


def test_choice():
    assert grammar.choice("buy", "side", ("buy", "sell")) == "buy"
    assert grammar.choice(None, "side", ("buy", "sell"), "sell") == "sell"
    for value in ("BUY", "buy\x00", 1, ["buy"]):
        with pytest.raises(InvalidInput) as raised:
            grammar.choice(value, "side", ("buy", "sell"))
        assert raised.value.field == "side"


@pytest.mark.parametrize("value", ["\x00", "a\ud800", "\udfff", ["ok", "\x00"],
                                   {"k": {"deep": ["x", "\ud800"]}}, {"\x00": 1}, ("t", "\udc00")])
def test_storable_refuses_nul_and_lone_surrogates_anywhere(value):
    with pytest.raises(InvalidInput) as caught:
        grammar.storable(value, "orders")
    assert caught.value.code == "INVALID_TEXT" and caught.value.field == "orders"


@pytest.mark.parametrize("value", [None, 1, 1.5, True, "", "plain", "tab\there", "€ 中文 😀",
                                   ["a", {"b": ["c", 2]}], {"k": "v"}, "\ud83d\ude00".encode(
                                       "utf-16", "surrogatepass").decode("utf-16")])
def test_storable_takes_every_other_json_value(value):
    grammar.storable(value, "orders")
