"""The events that cross a service boundary: one typed definition each.

Each ``EventType`` names its source service (the exchange is
``<source>.events``, the routing key the event's name), its schema version,
the fields every payload carries and its idempotency key. Producers build
payloads with ``build`` (which stamps ``event_version``), consumers check
them with ``parse``; docs/events.md describes the same list for people.

A payload without ``event_version`` is version 1 (the matching engine's
events predate the stamp). A consumer refuses a payload of a newer major
version than it knows (``UnsupportedEvent``) rather than misread it; extra
fields are allowed (additions do not bump the version).

Pure: standard library only.
"""
from __future__ import annotations

from dataclasses import dataclass, make_dataclass
from typing import Mapping

VERSION_KEY = "event_version"


class UnsupportedEvent(ValueError):
    """A payload that is not an object, misses a field, or is of a newer version."""


@dataclass(frozen=True)
class EventType:
    name: str
    source: str
    version: int
    fields: tuple[str, ...]
    idempotency_key: str

    @property
    def exchange(self) -> str:
        return f"{self.source}.events"

    def build(self, **fields) -> dict:
        missing = [f for f in self.fields if f not in fields]
        if missing:
            raise UnsupportedEvent(f"{self.name}: missing {missing}")
        return {VERSION_KEY: self.version, **fields}

    def parse(self, payload) -> Mapping:
        if not isinstance(payload, Mapping):
            raise UnsupportedEvent(f"{self.name}: the payload is not an object")
        version = payload.get(VERSION_KEY, 1)
        if not isinstance(version, int) or isinstance(version, bool) or version > self.version:
            raise UnsupportedEvent(f"{self.name}: version {version!r} is newer than "
                                   f"{self.version}")
        missing = [f for f in self.fields if f not in payload]
        if missing:
            raise UnsupportedEvent(f"{self.name}: missing {missing}")
        return payload


# ---------------------------------------------------------------- matching
# A trade's fields: each one's type and, for a text, its longest length (what
# ``trade_executed`` checks, and the fields of the Trade it returns).
_TRADE_FIELDS = {
    "market": (str, 64), "seq": (int, None), "trade_id": (str, 128), "price": (str, 64),
    "quantity": (str, 64), "quote_quantity": (str, 64), "taker_side": (str, 4),
    "maker_order_id": (int, None), "maker_user_id": (str, 128),
    "taker_order_id": (int, None), "taker_user_id": (str, 128), "executed_at": (int, None)}
TRADE_EXECUTED = EventType("trade_executed", "matching", 1, tuple(_TRADE_FIELDS), "trade_id")
BOOK_CHANGED = EventType("book_changed", "matching", 1, ("market", "seq", "at", "changes"),
                         "market+seq")
ORDER_UPDATED = EventType("order_updated", "matching", 1,
                          ("market", "seq", "event", "order_id", "user_id"), "market+seq+index")
MARKET_STATUS_CHANGED = EventType("market_status_changed", "matching", 1, ("market", "seq"),
                                  "market+seq")
# One engine batch's events for one audience (the routing key
# ``engine_batch.<audience>``, services/matching/wire.py): ``events`` is a list
# of ``[event name, event id, payload]``, each payload the event of that name
# (above) as it would travel alone. Consumers read it with ``unpack``.
ENGINE_BATCH = EventType("engine_batch", "matching", 1,
                         ("market", "first_seq", "last_seq", "at", "events"),
                         "market+last_seq+audience")
# Its routing keys, one per audience (what each carries: docs/events.md).
TRADES_AUDIENCE = "engine_batch.trades"   # wallets settlement, marketdata ingest
ORDERS_AUDIENCE = "engine_batch.orders"   # the orders service
PUSH_AUDIENCE = "engine_batch.push"       # the gateway's push bridge




def _sides(trade) -> tuple[tuple[int, str, bool], tuple[int, str, bool]]:
    """``(order_id, user_id, is_maker)`` of the maker, then the taker."""
    return ((trade.maker_order_id, trade.maker_user_id, True),
            (trade.taker_order_id, trade.taker_user_id, False))


Trade = make_dataclass(
    "Trade", [(name, kind) for name, (kind, _) in _TRADE_FIELDS.items()], frozen=True,
    namespace={"sides": _sides, "__module__": __name__, "__doc__": """A ``trade_executed``
    payload, decoded and checked once for every consumer (orders' fills, wallets'
    settlement, marketdata's ingest, the gateway's push). Amounts stay the
    engine's decimal strings: each consumer puts them on its own grid (ticks,
    lots, minor units) and refuses what is off it. A ``trade_id`` sent as an
    integer (tools, tests) is its text."""})


def trade_executed(payload) -> Trade:
    """``payload`` (one event of an ``engine_batch``, or a lone
    ``trade_executed``) as a Trade; UnsupportedEvent when it misses a field,
    has one of the wrong type or size, or is of a newer version."""
    body = TRADE_EXECUTED.parse(payload)
    values = {name: body[name] for name in _TRADE_FIELDS}
    trade_id = values["trade_id"]
    if isinstance(trade_id, int) and not isinstance(trade_id, bool) and trade_id >= 0:
        values["trade_id"] = str(trade_id)
    for name, (kind, longest) in _TRADE_FIELDS.items():
        value = values[name]
        if kind is str and not (isinstance(value, str) and 0 < len(value) <= longest):
            raise UnsupportedEvent(f"trade_executed: {name} is not a text of 1 to {longest} "
                                   "characters")
        if kind is int and (not isinstance(value, int) or isinstance(value, bool)
                            or value < (name == "seq")):
            raise UnsupportedEvent(f"trade_executed: {name} is not a "
                                   f"{'positive' if name == 'seq' else 'non-negative'} integer")
    if values["taker_side"] not in ("buy", "sell"):
        raise UnsupportedEvent("trade_executed: taker_side is neither buy nor sell")
    return Trade(**values)


# ---------------------------------------------------------------- wallets
# Written by the ledger's trigger (wallets migration 011) in the transaction
# that moves the money; the gateway re-reads the named balances.
BALANCES_CHANGED = EventType("balances_changed", "wallets", 1, ("changes",), "message_id")

# ---------------------------------------------------------------- registry
# ``version`` is the catalogue's version (the registry journal's id).
ASSET_LISTED = EventType("asset_listed", "registry", 1, ("version", "symbol", "spec", "change"),
                         "version")
MARKET_LISTED = EventType("market_listed", "registry", 1,
                          ("version", "symbol", "spec", "change"), "version")
MARKET_UPDATED = EventType("market_updated", "registry", 1,
                           ("version", "symbol", "spec", "change"), "version")

# ---------------------------------------------------------------- users
# Published through the users service's outbox (services/users/providers.py
# ``enqueue`` builds each with its definition); orders blocks frozen and
# closed users, the gateway's push bridge disconnects them.
USER_SIGNED_UP = EventType("user_signed_up", "users", 1,
                           ("user_id", "username", "signup_id", "at"), "user_id")
SIGNUP_ROLLED_BACK = EventType("signup_rolled_back", "users", 1, ("user_id", "signup_id", "at"),
                               "signup_id")
_ACCOUNT_STATE_FIELDS = ("user_id", "state", "previous_state", "reason", "by", "at")
USER_FROZEN = EventType("user_frozen", "users", 1, _ACCOUNT_STATE_FIELDS, "user_id+at")
USER_UNFROZEN = EventType("user_unfrozen", "users", 1, _ACCOUNT_STATE_FIELDS, "user_id+at")
USER_CLOSED = EventType("user_closed", "users", 1, _ACCOUNT_STATE_FIELDS, "user_id")
API_KEY_REVOKED = EventType("api_key_revoked", "users", 1, ("key_id", "user_id", "by", "at"),
                            "key_id")
# A live key's verification material changed (its IP allow-list): gateways
# drop what they cached for it (gateway/keycache.py).
API_KEY_CHANGED = EventType("api_key_changed", "users", 1, ("key_id", "user_id", "by", "at"),
                            "key_id+at")

ALL: dict[str, EventType] = {e.name: e for e in (
    TRADE_EXECUTED, BOOK_CHANGED, ORDER_UPDATED, MARKET_STATUS_CHANGED, ENGINE_BATCH,
    BALANCES_CHANGED,
    ASSET_LISTED, MARKET_LISTED, MARKET_UPDATED,
    USER_SIGNED_UP, SIGNUP_ROLLED_BACK, USER_FROZEN, USER_UNFROZEN, USER_CLOSED, API_KEY_REVOKED,
    API_KEY_CHANGED)}


def unpack(routing_key: str, message_id, body) -> list[tuple[str, object, object]]:
    """The events one delivery carries, as ``(event name, event id, payload)``
    in order: the events of an ``engine_batch.*`` message (checked with
    ENGINE_BATCH), or the delivery itself for a message of one event (what
    the engine sent before batches; durable queues may still hold such).
    Raises UnsupportedEvent for a batch that is malformed or too new."""
    if not routing_key.startswith(f"{ENGINE_BATCH.name}."):
        return [(routing_key, message_id, body)]
    events = ENGINE_BATCH.parse(body)["events"]
    if not isinstance(events, list) or not all(
            isinstance(e, list) and len(e) == 3 and isinstance(e[0], str) for e in events):
        raise UnsupportedEvent(f"{ENGINE_BATCH.name} {message_id}: events are not "
                               f"[name, id, payload] triples")
    return [tuple(e) for e in events]
