"""The fast JSON encoders write what the standard ones wrote: the same value
once read back, or the same refusal."""
import dataclasses
import datetime
import enum
import json
from decimal import Decimal

import pytest
from kombu.serialization import dumps as kombu_dumps, loads as kombu_loads
from kombu.utils import json as kombu_json
from psycopg.types.json import Jsonb, _JsonDumper

from services.common import json_codec


class Name(str):
    pass


class Side(str, enum.Enum):
    BUY = "buy"


@dataclasses.dataclass
class Point:
    x: int


VALUES = [
    {"market": "BTC-USDT", "events": [{"trade_id": 7, "price": "100.01", "maker": True}],
     "none": None, "ratio": 0.25, "pair": (1, 2)},
    {"amount_minor": 10 ** 30},                      # beyond 64 bits: the standard library's
    {1: "int key"},                                  # keys turned into strings as before
    {"text": "lone \ud800 surrogate"},
    {"text": "é €"},
    {"name": Name("subclass of str")},
    {"side": Side.BUY},
    {"at": datetime.datetime(2026, 12, 7, 1, 2, 3, tzinfo=datetime.timezone.utc)},
    {"amount": Decimal("1.10")},
    {"raw": b"bytes"},
    {"point": Point(1)},
]


def outcome(dumps, loads, value):
    try:
        return "written", loads(dumps(value))
    except TypeError:   # a value neither writes: the same refusal
        return "refused", None


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_the_database_gets_what_json_dumps_wrote(value):
    assert outcome(json_codec.dumps, json.loads, value) == outcome(
        json.dumps, json.loads, value)


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_messages_get_what_kombu_wrote(value):
    assert outcome(json_codec.message_dumps, kombu_json.loads, value) == outcome(
        kombu_json.dumps, kombu_json.loads, value)


def test_plain_values_are_written_by_orjson():
    # Compact separators: the standard encoders write ", " and ": ".
    assert json_codec.dumps({"a": [1, 2]}) == b'{"a":[1,2]}'
    assert json_codec.message_dumps({"a": [1, 2]}) == '{"a":[1,2]}'


def test_install_sets_both_encoders():
    json_codec.install()
    _, _, body = kombu_dumps({"a": Decimal("2.5"), "b": [1]}, serializer="json")
    assert body == '{"a":{"__type__":"decimal","__value__":"2.5"},"b":[1]}'
    assert kombu_loads(body, "application/json", "utf-8") == {"a": Decimal("2.5"), "b": [1]}
    assert _JsonDumper._dumps is json_codec.dumps
    assert Jsonb({"a": 1}).obj == {"a": 1}
