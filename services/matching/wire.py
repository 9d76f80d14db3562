"""The engine's wire formats. Pure: the caller passes the time.

* Commands in: one message per market per accepted batch
  (``command_batch_message``), or the older one message per command (durable
  queues may still hold those after an upgrade); ``commands_of`` reads both.
* Events out: engine events (integer ticks/lots, tuples) to the messages of
  docs/events.md (decimal strings)."""
from __future__ import annotations

from decimal import Decimal

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


def trade_id(market: str, trade_seq: int) -> str:
    return f"{market}-{trade_seq}"


def wire_messages(config: MarketConfig, events: list, at_ms: int) -> list[tuple[str, str, dict]]:
    """``(event_type, message_id, payload)`` for one command's events, in order:
    its trades, its order updates, then one ``book_changed`` with every level
    it touched."""
    market = config.symbol
    price, qty, quote = config.ticks_to_price, config.lots_to_qty, config.units_to_quote
    out, book = [], []
    seq = None
    for index, event in enumerate(events):
        data = event_to_dict(event, market)
        kind, seq = data.pop("type"), data["seq"]
        if kind == TRADE_EXECUTED:
            tid = trade_id(market, data["trade_id"])
            p, q = price(data["price"]), qty(data["quantity"])
            data.update(trade_id=tid, price=p, quantity=q, executed_at=at_ms,
                        quote_quantity=str(Decimal(p) * Decimal(q)))
            out.append(("trade_executed", tid, data))
        elif kind == BOOK_LEVEL_CHANGED:
            book.append({"side": data["side"], "price": price(data["price"]),
                         "quantity": qty(data["quantity"])})
        elif kind in ORDER_EVENTS:
            for field in ("price",):
                if data.get(field) is not None:
                    data[field] = price(data[field])
            for field in ("quantity", "filled_quantity", "remaining_quantity"):
                if data.get(field) is not None:
                    data[field] = qty(data[field])
            if data.get("remaining_quote") is not None:
                data["remaining_quote"] = quote(data["remaining_quote"])
            data.update(event=kind, at=at_ms)
            out.append(("order_updated", f"{market}:{seq}:{index}", data))
        elif kind == MARKET_STATUS_CHANGED:
            data.update(at=at_ms)
            out.append(("market_status_changed", f"{market}:{seq}:status", data))
    if book:
        out.append(("book_changed", f"{market}:{seq}:book",
                    {"market": market, "seq": seq, "at": at_ms, "changes": book}))
    return out
