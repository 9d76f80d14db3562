"""How the gateway reads a JSON request body (Flask's ``app.json.loads``,
behind every ``request.get_json``): as the standard library does, except that

* an object naming a key twice is refused: ``{"side": "buy", "side": "sell"}``
  was read as a sell (the last one wins), so a client and the exchange could
  disagree on what was ordered; Binance's form API refuses a repeated
  parameter too (-1101);
* nesting deeper than the interpreter's recursion limit is refused instead of
  escaping as a ``RecursionError`` (an HTTP 500).

Both raise ``ValueError``, which Flask and flask-openapi3 answer as a body
that is not valid JSON: 400 ``INVALID_INPUT``, nothing written.
"""
from __future__ import annotations

import json

from flask.json.provider import DefaultJSONProvider


class RepeatedKey(ValueError):
    pass


def _unique(pairs: list) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise RepeatedKey(f"the key {key[:40]!r} appears twice in one object")
        out[key] = value
    return out


def loads(text, **kwargs):
    try:
        return json.loads(text, object_pairs_hook=_unique, **kwargs)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


class StrictJSONProvider(DefaultJSONProvider):
    def loads(self, s, **kwargs):
        return loads(s, **kwargs)
