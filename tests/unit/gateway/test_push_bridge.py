"""The push bridge's decisions, without servers: what goes to which room."""
from __future__ import annotations

import contextlib

from gateway.bridge import DISCONNECT_USER, Bridge, mini_ticker
from services.common.events import USER_CLOSED, USER_FROZEN

TRADE = {"market": "BTC-USDT", "seq": 12, "trade_id": "BTC-USDT-3", "price": "30000.00",
         "quantity": "0.0100", "quote_quantity": "300.000000", "taker_side": "sell",
         "maker_order_id": 7, "maker_user_id": "u-maker", "taker_order_id": 9,
         "taker_user_id": "u-taker", "executed_at": 1_700_000_000_000}


class FakeWallets:
    def __init__(self, failing=()):
        self.failing = set(failing)
        self.reads = []

    def balances_of(self, users):
        self.reads.append(list(users))
        if self.failing & set(users):
            raise OSError("wallets did not answer")
        return {"balances": {user: {"USDT": {"available": "1.000000", "locked": "0.000000"}}
                             for user in users if not user.startswith("no-accounts")}}


class FakeServices:
    def __init__(self, wallets):
        self.wallets = wallets


def bridge(wallets=None):
    emitted = []
    services = FakeServices(wallets or FakeWallets())

    @contextlib.contextmanager
    def rpc():
        yield services

    made = Bridge("amqp://unused", "test", lambda e, d, r: emitted.append((e, d, r)), rpc,
                  clock=lambda: 42)
    return made, emitted


def book(seq, changes=None):
    return {"market": "BTC-USDT", "seq": seq, "at": 1,
            "changes": changes or [{"side": "buy", "price": "1.00", "quantity": "1.0000"}]}


def test_diffs_cover_the_seqs_since_the_previous_book_change():
    push, emitted = bridge()
    for seq in (5, 6, 9):
        push.handle("book_changed", book(seq))
        push.push_batches()
    assert [(d["first_seq"], d["last_seq"]) for _e, d, _r in emitted] == [(5, 5), (6, 6), (7, 9)]
    assert {r for _e, _d, r in emitted} == {"depth:BTC-USDT"}


def test_redelivered_or_older_book_changes_are_not_pushed_again():
    push, emitted = bridge()
    for seq in (5, 6, 6, 4):
        push.handle("book_changed", book(seq))
        push.push_batches()
    assert [d["last_seq"] for _e, d, _r in emitted] == [5, 6]


def test_a_batch_is_one_diff_with_the_changes_in_order():
    push, emitted = bridge()
    push.handle("book_changed", book(3))
    push.handle("book_changed", book(4, [{"side": "buy", "price": "1.00", "quantity": "0"}]))
    push.handle("book_changed", book(8, [{"side": "sell", "price": "2.00", "quantity": "3.0000"}]))
    push.push_batches()
    push.push_batches()  # nothing new: nothing sent
    assert len(emitted) == 1
    diff = emitted[0][1]
    assert (diff["first_seq"], diff["last_seq"]) == (3, 8)
    assert [c["quantity"] for c in diff["changes"]] == ["1.0000", "0", "3.0000"]


def test_trades_orders_go_to_the_order_count_give_back_at_the_flush_and_a_failure_stops_none():
    """The take-off's Memcached round trips wait for the flush: the fills of
    the engine batch are pushed first; a failing take-off fails no flush."""
    taken = []
    for failing in (False, True):
        push, emitted = bridge()

        def orders_filled(fills, failing=failing):
            taken.append(fills)
            if failing:
                raise OSError("memcached went away")
        push.orders_filled = orders_filled
        push.handle("trade_executed", TRADE)
        push.handle("trade_executed", {**TRADE, "trade_id": "BTC-USDT-4", "taker_order_id": 11})
        assert sorted(r for e, _d, r in emitted if e == "fill") == ["user:u-maker"] * 2 + \
            ["user:u-taker"] * 2
        assert len(taken) == (1 if failing else 0)      # nothing taken off before the flush
        push.handle("balances_changed", {"changes": [{"user": "u-maker"}]})
        push.flush()
        assert push.pending_filled == []
        assert any(e == "balances" for e, _d, _r in emitted)   # the flush went on
    assert taken == [[(7, "u-maker"), (9, "u-taker"), (7, "u-maker"), (11, "u-taker")]] * 2


def test_every_flush_calls_the_take_off_so_what_memcached_missed_is_sent_without_new_trades():
    """RateLimiter.orders_filled keeps what Memcached could not be told; it
    is sent at the next call, which must come at the next flush even when no
    trade came since (a quiet market after a Memcached restart)."""
    push, _emitted = bridge()
    taken = []
    push.orders_filled = taken.append
    push.flush()
    push.handle("trade_executed", TRADE)
    push.flush()
    push.flush()
    assert taken == [[], [(7, "u-maker"), (9, "u-taker")], []]


def test_public_trades_name_no_user_or_order_and_fills_go_to_each_side():
    push, emitted = bridge()
    push.handle("trade_executed", TRADE)
    push.push_batches()
    batches = [d for e, d, r in emitted if r == "trades:BTC-USDT"]
    assert len(batches) == 1
    public = batches[0]["trades"]
    assert len(public) == 1
    assert not {"maker_user_id", "taker_user_id", "maker_order_id", "taker_order_id",
                "user_id", "order_id"} & set(public[0])
    fills = {r: d for e, d, r in emitted if e == "fill"}
    assert fills["user:u-maker"]["order_id"] == 7 and fills["user:u-maker"]["side"] == "buy"
    assert fills["user:u-maker"]["role"] == "maker"
    assert fills["user:u-taker"]["order_id"] == 9 and fills["user:u-taker"]["side"] == "sell"
    assert all("user_id" not in d for d in fills.values())


def test_order_updates_go_to_their_user_only():
    push, emitted = bridge()
    push.handle("order_updated", {"market": "BTC-USDT", "seq": 3, "order_id": 1,
                                  "user_id": "u-1", "event": "order_done"})
    assert [(e, r) for e, _d, r in emitted] == [("order", "user:u-1")]


def test_balances_are_pushed_after_balances_changed_and_a_failed_read_is_retried():
    wallets = FakeWallets(failing={"u-2"})
    push, emitted = bridge(wallets)
    push.handle("balances_changed", {"changes": [{"user": "u-1", "asset": "USDT"},
                                                 {"user": "u-2", "asset": "USDT"}]})
    push.flush()
    assert emitted == []                    # one read for both: it failed, both wait
    wallets.failing.clear()
    push.flush()
    assert [(e, r) for e, _d, r in emitted] == [("balances", "user:u-1"),
                                                ("balances", "user:u-2")]
    assert emitted[0][1]["balances"] == [{"asset": "USDT", "available": "1.000000",
                                          "locked": "0.000000"}]
    push.flush()
    assert len(emitted) == 2  # nothing left to read
    assert wallets.reads == [["u-1", "u-2"], ["u-1", "u-2"]]


def test_the_balances_of_a_flush_are_read_in_one_call_per_balances_per_read_users():
    """One wallets.balances_of call per BALANCES_PER_READ dirty users, not one
    per user; a user without accounts is skipped, not retried."""
    from gateway.bridge import BALANCES_PER_READ
    wallets = FakeWallets()
    push, emitted = bridge(wallets)
    users = [f"u-{n:04d}" for n in range(BALANCES_PER_READ + 5)] + ["no-accounts-1"]
    push.handle("balances_changed", {"changes": [{"user": u, "asset": "USDT"} for u in users]})
    push.flush()
    assert [len(read) for read in wallets.reads] == [BALANCES_PER_READ, 6]
    assert sorted(r for _e, _d, r in emitted) == sorted(f"user:{u}" for u in users[:-1])
    push.flush()
    assert len(wallets.reads) == 2          # nothing dirty left


def test_frozen_and_closed_users_are_disconnected_everywhere():
    push, emitted = bridge()
    push.handle("user_frozen", USER_FROZEN.build(user_id="u-9", state="frozen",
                                                 previous_state="active", reason="test",
                                                 by="admin", at=1))
    push.handle("user_closed", USER_CLOSED.build(user_id="u-8", state="closed",
                                                 previous_state="active", reason="test",
                                                 by="admin", at=1))
    assert emitted == [(DISCONNECT_USER, {"user_id": "u-9", "state": "frozen"}, "user:u-9"),
                       (DISCONNECT_USER, {"user_id": "u-8", "state": "closed"}, "user:u-8")]


def test_mini_ticker_keeps_the_summary_fields():
    ticker = {"market": "BTC-USDT", "last": "1.00", "open": "0.90", "high": "1.10",
              "low": "0.80", "volume": "5", "quote_volume": "5.0", "change_percent": "11.11",
              "minute": 123, "best_bid": "0.99"}
    assert set(mini_ticker(ticker)) == {"market", "last", "open", "high", "low", "volume",
                                        "quote_volume", "change_percent"}


class Delivery:
    """The kombu message the bridge's consumer callback gets."""

    def __init__(self, routing_key, message_id):
        self.delivery_info = {"routing_key": routing_key}
        self.properties = {"message_id": message_id}
        self.acked = False
        self.multiple = None

    def ack(self, multiple=False):
        self.acked, self.multiple = True, multiple


def test_an_engine_batch_message_is_one_diff_of_its_seqs_with_its_trades_and_orders():
    """The engine's push message for one batch (services/matching/wire.py):
    the diff covers the batch's seqs (a fresh bridge starts at the batch's
    first_seq, not at its last), and the next batch's diff follows on."""
    from services.matching.engine import MatchingEngine
    from services.matching.models import MarketConfig, PlaceOrder
    from services.matching.wire import batch_messages

    config = MarketConfig("BTC-USDT", "BTC", "USDT", tick_size="0.01", lot_size="0.001")
    engine = MatchingEngine(config)
    push, emitted = bridge()

    def deliver(*commands):
        first, events = engine.seq + 1, []
        for command in commands:
            events.extend(engine.apply(command))
        for key, message_id, payload in batch_messages(config, events, 1_800_000_000_000,
                                                       first, engine.seq):
            if key == "engine_batch.push":
                message = Delivery(key, message_id)
                push._on_message(payload, message)
                assert push.unacked[-1] is message and not message.acked   # till a flush
        push.push_batches()

    deliver(PlaceOrder(1, "u-maker", "sell", price=10_000, quantity=1_000),
            PlaceOrder(2, "u-maker", "sell", price=10_001, quantity=1_000))
    deliver(PlaceOrder(3, "u-taker", "buy", price=10_001, quantity=1_500))
    diffs = [d for e, d, _r in emitted if e == "depth"]
    assert [(d["first_seq"], d["last_seq"]) for d in diffs] == [(1, 2), (3, 3)]
    assert sorted((c["price"], c["quantity"]) for c in diffs[1]["changes"]) == [
        ("100.00", "0.000"), ("100.01", "0.500")]
    assert [len(d["trades"]) for e, d, _r in emitted if e == "trades"] == [2]
    assert sorted(r for e, _d, r in emitted if e == "fill") == ["user:u-maker"] * 2 + \
        ["user:u-taker"] * 2
    orders = [(d["event"], d["order_id"]) for e, d, _r in emitted if e == "order"]
    assert ("command_accepted", 3) in orders and ("order_done", 3) in orders


def market_bridge():
    emitted = []
    made = Bridge("amqp://unused", "test", lambda e, d, r: emitted.append((e, d, r)),
                  lambda: None, clock=lambda: 42, streams="market")
    return made, emitted


def test_the_market_bridge_pushes_book_and_trades_only_and_the_private_one_the_rest():
    market, market_emitted = market_bridge()
    private, private_emitted = bridge()
    private.market_streams = False  # what streams="private" makes
    for push in (market, private):
        push.handle("trade_executed", TRADE)
        push.handle("book_changed", book(12))
        push.handle("order_updated", {"market": "BTC-USDT", "seq": 12, "order_id": 9,
                                      "user_id": "u-taker", "event": "order_done"})
        push.handle("balances_changed", {"changes": [{"user": "u-1", "asset": "USDT"}]})
        push.push_batches()
    assert sorted(e for e, _d, _r in market_emitted) == ["depth", "trades"]
    assert sorted(e for e, _d, _r in private_emitted) == ["fill", "fill", "order"]
    assert not market.dirty_users and private.dirty_users == {"u-1"}
    assert not market.dirty_markets and private.dirty_markets == {"BTC-USDT"}


def test_after_a_new_queue_the_next_diff_starts_at_its_own_batch_not_after_the_last():
    """An own queue lost on a reconnection may have missed batches: the next
    diff must not claim to follow on (clients would apply it over a gap)."""
    push, emitted = market_bridge()
    push.handle("book_changed", {**book(5), "first_seq": 4})
    push.push_batches()
    push.new_queue()
    push.handle("book_changed", {**book(9), "first_seq": 8})
    push.push_batches()
    assert [(d["first_seq"], d["last_seq"]) for _e, d, _r in emitted] == [(4, 5), (8, 9)]


def test_a_batch_goes_out_once_the_consumer_waits_not_after_a_period(monkeypatch):
    """The push loop wakes when the consumer has handled what was delivered;
    the period only spaces a busy market's frames (a period of 10 s here:
    the first batch must not wait for it)."""
    import eventlet

    from gateway import bridge as bridge_module
    monkeypatch.setattr(bridge_module, "PUSH_EVERY", 10.0)
    push, emitted = market_bridge()
    loop = eventlet.spawn(push.push_loop)
    try:
        push._on_message({"market": "BTC-USDT", "first_seq": 1, "last_seq": 1, "at": 40,
                          "event_version": 1,
                          "events": [["book_changed", "b1", book(1)],
                                     ["trade_executed", "t1", TRADE]]},
                         Delivery("engine_batch.push", "m1"))
        for _ in range(5):
            eventlet.sleep(0)
        assert [e for e, _d, _r in emitted] == ["trades", "depth"]
        trace = emitted[0][1]["trace"]
        assert trace["at"] == 40 and trace["consumed"] == 42 and trace["pushed"] == 42
    finally:
        push.running = False
        loop.kill()


def engine_batch(seq):
    trade = {**TRADE, "seq": seq, "trade_id": f"BTC-USDT-{seq}"}
    return ({"market": "BTC-USDT", "first_seq": seq, "last_seq": seq, "at": 40,
             "event_version": 1,
             "events": [["book_changed", f"b{seq}", book(seq)],
                        ["trade_executed", f"t{seq}", trade]]},
            Delivery("engine_batch.push", f"m{seq}"))


def test_a_few_batches_after_a_quiet_spell_go_out_at_once_and_a_stream_is_paced(monkeypatch):
    """The first PUSH_BURST batches after a quiet spell are each pushed as
    soon as they are consumed (before session 9 the second waited for the
    whole period); the next one waits for the pacer (a period of 1,000 s
    here: it must still be pending after the first ones went out, however
    slow the machine)."""
    import eventlet

    from gateway import bridge as bridge_module
    monkeypatch.setattr(bridge_module, "PUSH_EVERY", 1000.0)
    push, emitted = market_bridge()
    loop = eventlet.spawn(push.push_loop)
    try:
        for seq in range(1, bridge_module.PUSH_BURST + 2):
            push._on_message(*engine_batch(seq))
            for _ in range(5):
                eventlet.sleep(0)
        pushed = [(e, d["last_seq"] if e == "depth" else d["trades"][0]["seq"])
                  for e, d, _r in emitted]
        burst = bridge_module.PUSH_BURST
        assert pushed == [(e, seq) for seq in range(1, burst + 1) for e in ("trades", "depth")]
        assert push.pending_depth["BTC-USDT"]["last_seq"] == burst + 1  # paced: waits
    finally:
        push.running = False
        loop.kill()


def test_the_pacer_allows_a_burst_then_one_push_per_period():
    from gateway.bridge import Pacer
    pacer = Pacer(every=0.05, burst=3)
    for _ in range(3):
        assert pacer.wait(100.0) == 0.0
        pacer.spend(100.0)
    assert abs(pacer.wait(100.0) - 0.05) < 1e-9
    assert abs(pacer.wait(100.02) - 0.03) < 1e-9    # a token comes back every 0.05 s
    pacer.spend(100.05)
    assert pacer.wait(100.05) > 0                   # sustained: one per period
    assert pacer.wait(101.0) == 0.0                 # quiet again: the burst is back
    pacer.spend(101.0), pacer.spend(101.0), pacer.spend(101.0)
    assert pacer.wait(101.0) > 0                    # never more than the burst


def test_a_diff_never_claims_to_follow_on_over_missing_batches():
    """Batches 6..9 never arrived (dropped from a full queue): the pending
    diff goes out alone and the next one starts at its own batch, so a
    client sees the gap and re-syncs instead of applying it over the hole."""
    push, emitted = market_bridge()
    push.handle("book_changed", {**book(5), "first_seq": 4})
    push.handle("book_changed", {**book(12), "first_seq": 10})
    push.handle("book_changed", {**book(13), "first_seq": 13})
    push.push_batches()
    assert [(d["first_seq"], d["last_seq"]) for _e, d, _r in emitted] == [(4, 5), (10, 13)]


def test_the_emits_of_one_engine_batch_and_of_one_flush_go_out_together():
    """Every emit of one engine batch message (fills, order updates, the
    trades frame and the diff) and of one balances flush happens inside one
    ``corked()`` block: one message-queue message for the private streams,
    one write per connection for the market streams."""
    from services.matching.engine import MatchingEngine
    from services.matching.models import MarketConfig, PlaceOrder
    from services.matching.wire import batch_messages

    blocks, outside, inside = [], [], [False]

    @contextlib.contextmanager
    def corked():
        blocks.append([])
        inside[0] = True
        try:
            yield
        finally:
            inside[0] = False

    def emit(event, _data, _room):
        (blocks[-1] if inside[0] else outside).append(event)

    class FakeMarketdata:
        def get_ticker(self, market):
            return {"market": market, "last": "100.00"}

        def get_candles(self, market, interval, limit):
            return {"candles": [{"open": "100.00"}]}

    services = FakeServices(FakeWallets())
    services.marketdata = FakeMarketdata()

    @contextlib.contextmanager
    def rpc():
        yield services

    push = Bridge("amqp://unused", "test", emit, rpc, clock=lambda: 42, corked=corked)
    config = MarketConfig("BTC-USDT", "BTC", "USDT", tick_size="0.01", lot_size="0.001")
    engine = MatchingEngine(config)
    events = engine.apply(PlaceOrder(1, "u-maker", "sell", price=10_000, quantity=1_000))
    events += engine.apply(PlaceOrder(2, "u-taker", "buy", price=10_000, quantity=1_000))
    for key, message_id, payload in batch_messages(config, events, 1_800_000_000_000, 1,
                                                   engine.seq):
        if key == "engine_batch.push":
            push._on_message(payload, Delivery(key, message_id))
    push.push_batches()
    push.handle("balances_changed", {"changes": [{"user": "u-maker"}, {"user": "u-taker"}]})
    push.flush()
    assert "fill" in blocks[0] and "order" in blocks[0]
    assert blocks[1] == ["trades", "depth"]
    # The flush: the traded market's ticker and candles in one block, the
    # balances in another.
    assert blocks[2] == ["ticker", "mini_ticker"] + ["candle"] * 8
    assert blocks[3] == ["balances", "balances"]
    assert outside == []


def test_marketdata_down_costs_one_log_line_and_the_balances_still_go_out(caplog):
    """A gateway without marketdata (stopped, restarting, not deployed): the
    flush's balances are pushed anyway, the markets wait dirty for the next
    market flush, and the outage is logged once when it starts and once when
    it ends (was: a traceback every flush and the flush's balances lost)."""
    class Marketdata:
        down = True

        def get_ticker(self, market):
            if self.down:
                raise LookupError("Unknown service `marketdata`")
            return {"market": market, "last": "100.00"}

        def get_candles(self, market, interval, limit):
            return {"candles": []}

    push, emitted = bridge()
    marketdata = Marketdata()
    push.rpc().__enter__().marketdata = marketdata
    caplog.set_level("INFO", logger="gateway.bridge")
    for _ in range(3):
        push.dirty_markets.add("BTC-USDT")
        push.handle("balances_changed", {"changes": [{"user": "u-1", "asset": "USDT"}]})
        push.market_flushed = float("-inf")
        push.flush()
    assert [(e, r) for e, _d, r in emitted] == [("balances", "user:u-1")] * 3
    assert push.dirty_markets == {"BTC-USDT"}
    marketdata.down = False
    push.market_flushed = float("-inf")
    push.flush()
    assert ("ticker", "ticker:BTC-USDT") in [(e, r) for e, _d, r in emitted]
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.bridge"]
    assert len(lines) == 2 and "not read" in lines[0] and "read again" in lines[1]
    assert not any(r.exc_info for r in caplog.records)


def private_bridge():
    push, emitted = bridge()
    push.market_streams = False     # what streams="private" makes
    return push, emitted


def order_update(order_id):
    """A delivery of one order update (no read at the flush)."""
    body = {"market": "BTC-USDT", "seq": order_id, "order_id": order_id, "user_id": "u-1",
            "event": "order_done"}
    return body, Delivery("order_updated", f"m-{order_id}")


def test_the_private_bridge_acknowledges_a_delivery_once_the_flush_after_it_has_run():
    """Killed between a delivery and the flush that takes its effects (the
    first-fill take-offs, the balances read), the process leaves the delivery
    unacknowledged: the broker hands it to the standby bridge. Before, it was
    acknowledged on receipt and those effects died with the process."""
    push, emitted = private_bridge()
    first, second = order_update(1), order_update(2)
    push._on_message(*first)
    assert [e for e, _d, _r in emitted] == ["order"]          # pushed at once ...
    push.ack_flushed()
    assert not first[1].acked                                  # ... acknowledged later
    push.flush()
    push._on_message(*second)                                  # after the flush began
    push.ack_flushed()                                         # the consumer's next wake
    assert first[1].acked and first[1].multiple                # one frame for all before
    assert not second[1].acked and push.unacked == [second[1]]
    push.flush()
    push.ack_flushed()
    assert second[1].acked and push.unacked == []


def test_past_the_deferred_maximum_deliveries_are_acknowledged_at_once():
    """A flush far behind (a service down: its reads wait for their deadline)
    must not stop the deliveries at the prefetch: the fills keep flowing."""
    from gateway.bridge import ACK_DEFERRED_MAX
    push, emitted = private_bridge()
    deliveries = [order_update(i) for i in range(ACK_DEFERRED_MAX + 1)]
    for body, message in deliveries:
        push._on_message(body, message)
    assert not deliveries[-2][1].acked
    assert deliveries[-1][1].acked and deliveries[-1][1].multiple
    assert push.unacked == []
    assert len([e for e, _d, _r in emitted if e == "order"]) == ACK_DEFERRED_MAX + 1


def test_deliveries_of_a_lost_connection_are_left_to_the_broker():
    push, _emitted = private_bridge()
    delivery = order_update(4)
    push._on_message(*delivery)
    push.flush()
    push._lost()                   # the connection went: its channel cannot acknowledge
    push.ack_flushed()
    assert not delivery[1].acked and push.unacked == []


def test_the_market_bridge_acknowledges_on_receipt():
    """Its queue is the process's own (gone with it): nothing to hand over."""
    push, _emitted = market_bridge()
    body = {"market": "BTC-USDT", "first_seq": 1, "last_seq": 1, "at": 40,
            "events": []}
    message = Delivery("engine_batch.push", "m-5")
    push._on_message(body, message)
    assert message.acked and push.unacked == []
