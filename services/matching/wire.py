"""The engine's wire formats. Pure: the caller passes the time.

* Commands in: one message per market per accepted batch
  (``command_batch_message``), or the older one message per command (durable
  queues may still hold those after an upgrade); ``commands_of`` reads both.
* Events out: engine events (integer ticks/lots, tuples) to the messages of
  docs/events.md (decimal strings)."""
from __future__ import annotations

from decimal import Decimal

from services.common.events import ENGINE_BATCH, ORDERS_AUDIENCE, PUSH_AUDIENCE, TRADES_AUDIENCE

from .models import (
    BOOK_LEVEL_CHANGED, COMMAND_ACCEPTED, COMMAND_REJECTED, MARKET_STATUS_CHANGED, ORDER_AMENDED,
    ORDER_DONE, TRADE_EXECUTED, MarketConfig, event_to_dict,
)

ORDER_EVENTS = {COMMAND_ACCEPTED, COMMAND_REJECTED, ORDER_DONE, ORDER_AMENDED}


# ---------------------------------------------------------------- commands in
#
# A command batch message, sent to the market's command queue
# (providers.command_queue_name) through the outbox:
#
#   message_id  "batch:" + the first command's id (command ids are unique per
#               market, so this is too; the engine dedupes by command id, not
#               by this)
#   payload     {"batch_version": 1, "market": "BTC-USDT",
#                "commands": [{"id": "place:9001", "command": {...}}, ...]}
#
# ``command`` is ``models.command_to_dict`` of the command; the engine applies
# them in list order as part of one engine batch. A writer that assembles the
# batch in SQL builds the same object, e.g.
#   jsonb_build_object('batch_version', 1, 'market', m, 'commands',
#       jsonb_agg(jsonb_build_object('id', command_id, 'command', command) ORDER BY n))
# The older message (one command: message_id = the command id, payload
# {"command": {...}}) is still read.

COMMAND_BATCH_VERSION = 1


class MalformedCommandMessage(ValueError):
    """A command message the engine cannot read (it is logged and skipped)."""


def command_batch_message(market: str, commands: list[tuple[str, dict]]) -> tuple[str, dict]:
    """``(message_id, payload)`` of ONE message carrying ``(command_id,
    command_dict)`` pairs of one market, in the order the engine applies them."""
    if not commands:
        raise ValueError("a command batch needs at least one command")
    return (f"batch:{commands[0][0]}",
            {"batch_version": COMMAND_BATCH_VERSION, "market": market,
             "commands": [{"id": command_id, "command": command}
                          for command_id, command in commands]})


def commands_of(message_id, body, errors: list | None = None) -> list[tuple[str, dict]]:
    """``(command_id, command_dict)`` pairs of a command message of either
    shape, in order. A message that is neither (a batch of a newer version
    included) raises MalformedCommandMessage; an entry of a batch without an
    id is left out and described in ``errors`` (the others still count)."""
    if not isinstance(body, dict):
        raise MalformedCommandMessage(f"{message_id}: the body is not an object")
    if "commands" not in body:
        if not isinstance(message_id, str) or not message_id or "command" not in body:
            raise MalformedCommandMessage(f"{message_id}: neither a command nor a batch")
        return [(message_id, body["command"])]
    version = body.get("batch_version")
    if type(version) is not int or not 1 <= version <= COMMAND_BATCH_VERSION:
        raise MalformedCommandMessage(f"{message_id}: command batch version {version!r}")
    commands = body["commands"]
    if not isinstance(commands, list):
        raise MalformedCommandMessage(f"{message_id}: commands is not a list")
    out = []
    for index, item in enumerate(commands):
        if isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"] \
                and "command" in item:
            out.append((item["id"], item["command"]))
        elif errors is not None:
            errors.append(f"{message_id}: entry {index} has no id or no command: {item!r:.200}")
    return out


# ---------------------------------------------------------------- events out
#
# Per engine batch (the commands one transaction journals, seqs first_seq ..
# last_seq of one market), one message per audience, each carrying only
# the events its consumers act on, in the engine's order (docs/events.md):
#
#   engine_batch.trades  the trades               wallets settlement, marketdata ingest
#   engine_batch.orders  the trades, and the      orders (fills, final states,
#                        order updates orders     leftover releases)
#                        acts on
#   book_changed         ONE coalesced book       marketdata depth books
#                        change: every level the
#                        batch touched, its new
#                        total, seq = last_seq
#   engine_batch.push    trades, order updates    the gateway's push bridge
#                        of users, the book
#                        change
#
# ``engine_batch.*`` payloads are services.common.events.ENGINE_BATCH:
# ``{"event_version": 1, "market", "first_seq", "last_seq", "at",
#   "events": [[event name, event id, event payload], ...]}``; each payload
# is the event of that name as it was sent alone before (trade_executed,
# order_updated, book_changed). The book change goes out for every batch,
# even one that left the book as it was: consecutive ones chain
# (first_seq = the previous one's seq + 1) so a consumer sees any gap.

BOOK_CHANGED = "book_changed"


def trade_id(market: str, trade_seq: int) -> str:
    return f"{market}-{trade_seq}"


def orders_acts_on(update: dict) -> bool:
    """The order updates the orders service records: an order's end, an
    amend, an engine refusal of a placement (docs/order-flow.md). Acceptances
    and refused cancels change nothing there."""
    event = update["event"]
    return update.get("order_id") is not None and (
        event in (ORDER_DONE, ORDER_AMENDED)
        or (event == COMMAND_REJECTED and update.get("command") == "place_order"))


def _order_update(config: MarketConfig, data: dict, kind: str, at_ms: int) -> dict:
    price, qty, quote = config.ticks_to_price, config.lots_to_qty, config.units_to_quote
    if data.get("price") is not None:
        data["price"] = price(data["price"])
    for field in ("quantity", "filled_quantity", "remaining_quantity"):
        if data.get(field) is not None:
            data[field] = qty(data[field])
    if data.get("remaining_quote") is not None:
        data["remaining_quote"] = quote(data["remaining_quote"])
    data.update(event=kind, at=at_ms)
    return data


def _trade(config: MarketConfig, data: dict, at_ms: int) -> dict:
    p, q = config.ticks_to_price(data["price"]), config.lots_to_qty(data["quantity"])
    data.update(trade_id=trade_id(config.symbol, data["trade_id"]), price=p, quantity=q,
                executed_at=at_ms, quote_quantity=str(Decimal(p) * Decimal(q)))
    return data


def _events(config: MarketConfig, events: list, at_ms: int):
    """``(name, event id, payload)`` of engine events (any number of
    commands'), book level changes as ``("book_level", None, change)``.
    An order update's id is ``<market>:<seq>:<index of the event in its
    command's events>``, as it always was."""
    market = config.symbol
    index, seq = 0, None
    for event in events:
        data = event_to_dict(event, market)
        kind = data.pop("type")
        index = index + 1 if data["seq"] == seq else 0
        seq = data["seq"]
        if kind == TRADE_EXECUTED:
            trade = _trade(config, data, at_ms)
            yield "trade_executed", trade["trade_id"], trade
        elif kind == BOOK_LEVEL_CHANGED:
            yield "book_level", None, {"side": data["side"],
                                       "price": config.ticks_to_price(data["price"]),
                                       "quantity": config.lots_to_qty(data["quantity"])}
        elif kind in ORDER_EVENTS:
            yield "order_updated", f"{market}:{seq}:{index}", _order_update(config, data, kind,
                                                                           at_ms)
        elif kind == MARKET_STATUS_CHANGED:
            data.update(at=at_ms)
            yield "market_status_changed", f"{market}:{seq}:status", data


def batch_messages(config: MarketConfig, events: list, at_ms: int, first_seq: int,
                   last_seq: int) -> list[tuple[str, str, dict]]:
    """``(routing_key, message_id, payload)`` of one engine batch: the events
    of the commands journaled as seqs ``first_seq .. last_seq`` (in order),
    one message per audience that has something to act on (see above), and
    ``market_status_changed`` alone as it happens (halts are rare)."""
    market = config.symbol
    trades, orders, push, statuses = [], [], [], []
    levels: dict[tuple[str, str], dict] = {}
    for name, event_id, payload in _events(config, events, at_ms):
        if name == "trade_executed":
            entry = [name, event_id, payload]
            trades.append(entry)
            orders.append(entry)
            push.append(entry)
        elif name == "order_updated":
            entry = [name, event_id, payload]
            if orders_acts_on(payload):
                orders.append(entry)
            if payload.get("user_id") is not None:
                push.append(entry)
        elif name == "book_level":
            # The level's latest total wins; it keeps its first place.
            levels[(payload["side"], payload["price"])] = payload
        else:
            statuses.append((name, event_id, payload))
    book = {"market": market, "seq": last_seq, "first_seq": first_seq, "prev_seq": first_seq - 1,
            "at": at_ms, "changes": list(levels.values())}
    book_id = f"{market}:{first_seq}-{last_seq}:book"
    push.append([BOOK_CHANGED, book_id, book])

    def batch(audience: str, entries: list) -> tuple[str, str, dict]:
        return (audience, f"{market}:{first_seq}-{last_seq}:{audience.rpartition('.')[2]}",
                ENGINE_BATCH.build(market=market, first_seq=first_seq, last_seq=last_seq,
                                   at=at_ms, events=entries))

    out = []
    if trades:
        out.append(batch(TRADES_AUDIENCE, trades))
    if orders:
        out.append(batch(ORDERS_AUDIENCE, orders))
    out.append((BOOK_CHANGED, book_id, book))
    out.append(batch(PUSH_AUDIENCE, push))
    return out + statuses
