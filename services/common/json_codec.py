"""JSON written by orjson where the standard library would write the same
document, and by the standard library everywhere else.

Every order is written as JSON several times on its way (the RPC request
and reply through kombu, the acceptance batch, the engine's command, journal
and events through psycopg's ``Jsonb``). ``json.dumps`` costs about 6 us per
engine event, orjson about 0.5 (40 events: 232 against 19 us on this
machine), and the profiles of issue 18's closed loop put JSON encoding at
6-11 % of the orders and matching processes (bench/README.md, session 20).

What orjson writes differently is never asked of it: it is given only what
it encodes as the standard library does (str, int, float, bool, None, dict
with str keys, list, tuple), and everything else makes it raise, whereupon
the standard encoder writes the value as before:

* datetimes, dataclasses, subclasses of str/int/dict/list go to ``default``
  (``OPT_PASSTHROUGH_*``): kombu's own ``default`` for messages (its
  ``__type__`` markers for datetime, Decimal, UUID, bytes), nothing for the
  database (``json.dumps`` raises there too);
* integers beyond 64 bits (minor units of a scale-18 asset can be), dict keys
  that are not str (the standard library turns them into strings), strings
  with lone surrogates: orjson raises, the standard library writes them.

Two differences remain, neither in a value the exchange writes: a float NaN
or infinity is ``null`` (the standard library writes ``NaN``, which is not
JSON and which PostgreSQL refuses), and a ``uuid.UUID`` object is its string
(kombu would mark it; our messages carry ids as strings). Non-ASCII text is
written as UTF-8 instead of ``\\u`` escapes: the same string once decoded.

Reading stays with the standard library: orjson reads an integer beyond 64
bits as a float, which would round an amount.

``install()`` (each service module at import, with rpc_replies.install; the
gateway; the benchmark's echo service and clients, so that the baseline and
the load pay the same) sets both encoders for the process.
"""
from __future__ import annotations

import json
from typing import Any

import orjson
from kombu.serialization import registry
from kombu.utils import json as kombu_json
from psycopg.types.json import set_json_dumps

# Everything orjson would write its own way is handed to ``default``.
_ONLY_PLAIN = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
               | orjson.OPT_PASSTHROUGH_SUBCLASS)
_kombu_default = kombu_json.JSONEncoder().default


def dumps(value: Any) -> bytes:
    """What ``json.dumps`` writes (psycopg's ``Json``/``Jsonb`` parameters,
    orders' merged engine commands), as UTF-8."""
    try:
        return orjson.dumps(value, option=_ONLY_PLAIN)
    except TypeError:   # orjson.JSONEncodeError is one
        return json.dumps(value).encode()


def message_dumps(value: Any) -> str:
    """kombu's ``json`` serializer (Nameko's RPC and events): what
    ``kombu.utils.json.dumps`` writes."""
    try:
        return orjson.dumps(value, default=_kombu_default, option=_ONLY_PLAIN).decode()
    except TypeError:
        return kombu_json.dumps(value)


def install() -> None:
    set_json_dumps(dumps)
    registry.register("json", message_dumps, kombu_json.loads,
                      content_type="application/json", content_encoding="utf-8")
