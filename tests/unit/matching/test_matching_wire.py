"""The engine's wire formats (services/matching/wire.py): command batch
messages in, per-batch event messages out."""
import json

import pytest

from services.matching.models import CancelOrder, Halt, command_to_dict
from services.matching.wire import (
    COMMAND_BATCH_VERSION, MalformedCommandMessage, command_batch_message, commands_of,
)


def test_a_command_batch_is_one_message_read_back_in_order():
    commands = [("place:7", {"type": "place_order", "order_id": 7}),
                ("cancel:5:x", command_to_dict(CancelOrder(5, "u-1"))),
                ("halt:BTC-USDT:y", command_to_dict(Halt()))]
    message_id, payload = command_batch_message("BTC-USDT", commands)
    assert message_id == "batch:place:7"
    assert payload["batch_version"] == COMMAND_BATCH_VERSION and payload["market"] == "BTC-USDT"
    # As it travels (JSON) and comes back.
    assert commands_of(message_id, json.loads(json.dumps(payload))) == commands


def test_the_older_one_command_message_is_still_read():
    assert commands_of("place:9", {"command": {"type": "halt"}}) == [("place:9", {"type": "halt"})]


@pytest.mark.parametrize("message_id, body", [
    ("m", "not an object"),
    ("m", {"something": "else"}),
    (None, {"command": {"type": "halt"}}),          # a single command's id is its message id
    ("m", {"commands": [], "batch_version": COMMAND_BATCH_VERSION + 1}),
    ("m", {"commands": []}),                          # no version
    ("m", {"commands": {"id": "a"}, "batch_version": 1}),
])
def test_a_message_of_neither_shape_is_refused(message_id, body):
    with pytest.raises(MalformedCommandMessage):
        commands_of(message_id, body)


def test_an_entry_without_id_is_left_out_and_reported_the_others_count():
    errors = []
    body = {"batch_version": 1, "market": "BTC-USDT",
            "commands": [{"id": "a", "command": {"type": "halt"}}, {"command": {"type": "resume"}},
                         "junk", {"id": "b", "command": {"type": "resume"}}]}
    assert commands_of("batch:a", body, errors) == [("a", {"type": "halt"}),
                                                    ("b", {"type": "resume"})]
    assert len(errors) == 2


def test_an_empty_batch_cannot_be_built():
    with pytest.raises(ValueError):
        command_batch_message("BTC-USDT", [])


# ---------------------------------------------------------------- events out

from services.common.events import (  # noqa: E402
    ENGINE_BATCH, ORDERS_AUDIENCE, PUSH_AUDIENCE, TRADES_AUDIENCE, UnsupportedEvent, unpack,
)
from services.matching.engine import MatchingEngine  # noqa: E402
from services.matching.models import MarketConfig, PlaceOrder  # noqa: E402
from services.matching.wire import batch_messages  # noqa: E402

CONFIG = MarketConfig("BTC-USDT", "BTC", "USDT", tick_size="0.01", lot_size="0.001")


def engine_batch(engine, commands):
    events, first = [], engine.seq + 1
    for command in commands:
        events.extend(engine.apply(command))
    return batch_messages(CONFIG, events, 1_800_000_000_000, first, engine.seq)


def by_key(messages):
    out = {}
    for key, message_id, payload in messages:
        assert key not in out, f"two {key} messages for one batch"
        out[key] = (message_id, json.loads(json.dumps(payload)))   # as it travels
    return out


def test_one_message_per_audience_per_batch_each_with_only_what_it_acts_on():
    engine = MatchingEngine(CONFIG)
    messages = by_key(engine_batch(engine, [
        PlaceOrder(1, "maker", "sell", price=10_000, quantity=3_000),
        PlaceOrder(2, "maker", "sell", price=10_001, quantity=1_000),
        PlaceOrder(3, "taker", "buy", price=10_001, quantity=3_500),
    ]))
    assert set(messages) == {TRADES_AUDIENCE, ORDERS_AUDIENCE, PUSH_AUDIENCE, "book_changed"}

    trades = unpack(TRADES_AUDIENCE, *messages[TRADES_AUDIENCE])
    assert [name for name, _, _ in trades] == ["trade_executed"] * 2
    assert [event_id for _, event_id, _ in trades] == ["BTC-USDT-1", "BTC-USDT-2"]
    assert trades[0][2]["quote_quantity"] == "300.00000" and trades[0][2]["seq"] == 3

    # Orders: the fills and the ends (maker 1, taker 3) in the engine's order;
    # no acceptance (it ignores those).
    orders = unpack(ORDERS_AUDIENCE, *messages[ORDERS_AUDIENCE])
    assert [(n, p.get("event"), p.get("order_id")) for n, _, p in orders] == [
        ("trade_executed", None, None), ("order_updated", "order_done", 1),
        ("trade_executed", None, None), ("order_updated", "order_done", 3)]
    assert all(p["event"] != "command_accepted" for n, _, p in orders if n == "order_updated")

    # The push: every user's order updates (acceptances too), trades, one book change.
    push = unpack(PUSH_AUDIENCE, *messages[PUSH_AUDIENCE])
    assert [p["event"] for n, _, p in push if n == "order_updated"].count("command_accepted") == 3
    assert [n for n, _, _ in push].count("book_changed") == 1

    # The book change is coalesced over the batch: each level once, its final total.
    _, book = messages["book_changed"]
    assert (book["first_seq"], book["prev_seq"], book["seq"]) == (1, 0, 3)
    assert sorted((c["side"], c["price"], c["quantity"]) for c in book["changes"]) == [
        ("sell", "100.00", "0.000"), ("sell", "100.01", "0.500")]
    assert push[-1][2] == book

    envelope = messages[ORDERS_AUDIENCE][1]
    assert ENGINE_BATCH.parse(envelope)["event_version"] == 1
    assert (envelope["first_seq"], envelope["last_seq"]) == (1, 3)


def test_book_changes_chain_from_batch_to_batch_even_when_the_book_stayed():
    engine = MatchingEngine(CONFIG)
    first = by_key(engine_batch(engine, [PlaceOrder(1, "a", "sell", price=10_000, quantity=1_000)]))
    # A placement the engine refuses (a second order id 1) changes nothing:
    # still a book change, empty, so the next one follows on.
    second = by_key(engine_batch(engine, [PlaceOrder(1, "a", "sell", price=10_000, quantity=1_000)]))
    third = by_key(engine_batch(engine, [PlaceOrder(2, "b", "buy", price=9_000, quantity=1_000)]))
    books = [m["book_changed"][1] for m in (first, second, third)]
    assert [(b["first_seq"], b["seq"]) for b in books] == [(1, 1), (2, 2), (3, 3)]
    assert books[1]["changes"] == []
    # Without trades there is no trades message; a refused placement is for orders.
    assert TRADES_AUDIENCE not in second and ORDERS_AUDIENCE in second
    assert ORDERS_AUDIENCE not in third      # an accepted resting order: nothing for orders


def test_a_single_event_message_unpacks_to_itself_and_a_bad_batch_is_refused():
    body = {"market": "BTC-USDT", "trade_id": "x"}
    assert unpack("trade_executed", "x", body) == [("trade_executed", "x", body)]
    with pytest.raises(UnsupportedEvent):
        unpack(TRADES_AUDIENCE, "m", {"market": "BTC-USDT", "first_seq": 1, "last_seq": 1,
                                      "at": 1, "events": [["trade_executed", "x"]]})
    with pytest.raises(UnsupportedEvent):
        unpack(TRADES_AUDIENCE, "m", {"event_version": 2, "market": "BTC-USDT", "first_seq": 1,
                                      "last_seq": 1, "at": 1, "events": []})


def test_marketdata_depth_follows_the_coalesced_book_changes_and_sees_a_lost_one():
    """The book changes chain by prev_seq (services/marketdata/depth.py): a
    book fed every batch's change stays synced and equals the engine's; one
    that misses a batch (even one that changed nothing) does not apply the
    next as if nothing was missing."""
    from decimal import Decimal

    from services.marketdata.depth import DepthBook

    engine = MatchingEngine(CONFIG)
    books = [by_key(engine_batch(engine, commands))["book_changed"][1] for commands in (
        [PlaceOrder(1, "a", "sell", price=10_000, quantity=1_000),
         PlaceOrder(2, "a", "sell", price=10_100, quantity=2_000)],
        [PlaceOrder(1, "a", "sell", price=10_000, quantity=1_000)],      # refused: no change
        [PlaceOrder(3, "b", "buy", price=10_000, quantity=400),
         PlaceOrder(4, "b", "buy", price=9_000, quantity=1_000)],
    )]

    def apply(book, change):
        return book.apply(change["seq"], change["at"],
                          [(c["side"], Decimal(c["price"]), Decimal(c["quantity"]))
                           for c in change["changes"]], change["prev_seq"])

    whole = DepthBook("BTC-USDT")
    assert [apply(whole, change) for change in books] == ["applied"] * 3
    assert whole.synced and whole.seq == engine.seq
    assert (dict(whole.asks), dict(whole.bids)) == (
        {Decimal("100.00"): Decimal("0.600"), Decimal("101.00"): Decimal("2.000")},
        {Decimal("90.00"): Decimal("1.000")})

    missed = DepthBook("BTC-USDT")
    assert apply(missed, books[0]) == "applied"
    assert apply(missed, books[2]) == "buffered"       # waits for seq 3, not applied
    assert missed.seq == books[0]["seq"]
