"""Engine events (integer ticks/lots, tuples) to the wire messages of
docs/events.md (decimal strings). Pure: the caller passes the time."""
from __future__ import annotations

from decimal import Decimal

from .models import (
    BOOK_LEVEL_CHANGED, COMMAND_ACCEPTED, COMMAND_REJECTED, MARKET_STATUS_CHANGED, ORDER_AMENDED,
    ORDER_DONE, TRADE_EXECUTED, MarketConfig, event_to_dict,
)

ORDER_EVENTS = {COMMAND_ACCEPTED, COMMAND_REJECTED, ORDER_DONE, ORDER_AMENDED}


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
