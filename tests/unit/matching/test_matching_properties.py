"""Property tests: the engine against the reference model on random command streams.

Examples per test: ``MATCHING_EXAMPLES`` (default 150; CI-friendly). Run a
deeper search with e.g. ``MATCHING_EXAMPLES=3000 pytest tests/unit/matching``.
``services.matching.engine`` is the compiled engine once ``scripts/build_engine.py``
has run; the ``interpreted`` tests run the same properties, with a third of
the examples, on the ``.py`` source (see test_matching_compiled.py).
The streams are drawn against the reference model itself (see ``scenarios``),
so most cancels and amends hit open orders and prices sit around the touch.
"""

import json
import os
from collections import defaultdict

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from matching_reference import ReferenceEngine

from bench.engine_bench import load_interpreted_engine
from services.matching.engine import MatchingEngine
from services.matching.models import (
    BOOK_LEVEL_CHANGED,
    ORDER_AMENDED,
    ORDER_DONE,
    STP_MODES,
    TRADE_EXECUTED,
    AmendOrder,
    CancelAll,
    CancelOrder,
    Configure,
    Halt,
    MarketConfig,
    PlaceOrder,
    Resume,
    SetReferencePrice,
    command_from_dict,
    command_to_dict,
)

EXAMPLES = int(os.environ.get("MATCHING_EXAMPLES", "150"))
_NO_SHRINK = {"phases": [Phase.explicit, Phase.generate]} if os.environ.get("MATCHING_NO_SHRINK") else {}
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    **_NO_SHRINK,  # MATCHING_NO_SHRINK=1: report the first failure unshrunk (mutation testing)
)
INTERPRETED_PROPERTY = settings(PROPERTY, max_examples=max(1, EXAMPLES // 3))
InterpretedEngine = load_interpreted_engine().MatchingEngine

USERS = ["alice", "bob", "carol", 7]  # any hashable user id is carried as is


# ---------------------------------------------------------------- strategies


@st.composite
def configs(draw):
    return MarketConfig(
        symbol="T-U",
        base_asset="T",
        quote_asset="U",
        tick_size="1",
        lot_size="1",
        min_quantity=draw(st.sampled_from([None, None, "2"])),
        max_quantity=draw(st.sampled_from([None, None, "12"])),
        min_notional=draw(st.sampled_from([None, None, "250"])),
        price_band_percent=draw(st.sampled_from([None, None, "4", "7.5"])),
        max_open_orders=draw(st.sampled_from([None, 2, None, 3])),
        default_stp=draw(st.sampled_from(STP_MODES)),
        halted=draw(st.sampled_from(rarely(False, True, 12))),
    )


def rarely(common, rare, one_in):
    """Choices for sampled_from with ``rare`` once among ``one_in``, away from
    the ends of the list (Hypothesis favours the ends)."""
    half = (one_in - 1) // 2
    return [common] * half + [rare] + [common] * (one_in - 1 - half)


KINDS = (
    ["limit"] * 12
    + ["market"] * 3
    + ["cancel"] * 4
    + ["cancel_all", "halt", "reference", "configure"]
    + ["amend"] * 4
    + ["odd_place"] * 2
    + ["resume"] * 4
    + ["cancel"] * 4
    + ["amend"] * 4
    + ["market"] * 2
    + ["limit"] * 12
)


@st.composite
def scenarios(draw, max_size=50):
    """A market config and a command stream for it.

    The stream is drawn against the reference model, so cancels and amends
    mostly name open orders and limit prices sit around the touch; a few
    commands still name unknown or closed orders.
    """
    config = draw(configs())
    shadow = ReferenceEngine(config)
    used = []
    next_id = [1]

    def new_id():
        if used and draw(st.sampled_from(rarely(False, True, 25))):
            return draw(st.sampled_from(used))  # duplicate, open or closed
        oid = next_id[0]
        next_id[0] += 1
        used.append(oid)
        return oid

    def some_id():
        open_ids = [o.oid for o in shadow.resting]
        roll = draw(st.sampled_from(["open"] * 4 + ["used", "unknown"] + ["open"] * 4))
        if open_ids and roll == "open":
            return draw(st.sampled_from(open_ids))
        if used and roll != "unknown":
            return draw(st.sampled_from(used))
        return 10_000 + draw(st.integers(0, 2))  # never used

    def near_price():
        mids = [o.price for o in shadow.resting] or [100]
        centre = draw(st.sampled_from(mids))
        return max(1, centre + draw(st.integers(-3, 3)))

    qty = st.integers(1, 9)
    user = st.sampled_from(USERS)
    stp = st.sampled_from([None, None, None] + list(STP_MODES))
    out = []
    for _ in range(draw(st.integers(min(8, max_size), max_size))):
        kind = draw(st.sampled_from(KINDS))
        if kind in ("cancel", "amend") and not shadow.resting and draw(st.sampled_from(rarely(True, False, 5))):
            kind = "limit"  # mostly aim at open orders; sometimes at nothing
        if kind == "limit":
            tif = draw(st.sampled_from([None, "GTC", "GTC", "GTC", "IOC", "FOK"]))
            post_only = tif in (None, "GTC") and draw(st.sampled_from(rarely(False, True, 8)))
            cmd = PlaceOrder(
                new_id(), draw(user), draw(st.sampled_from(["buy", "sell"])), "limit",
                near_price(), draw(qty), None, tif, post_only, draw(stp),
            )
        elif kind == "market":
            side = draw(st.sampled_from(["buy", "sell"]))
            tif = draw(st.sampled_from([None, "IOC", "FOK"]))
            if side == "buy" and tif != "FOK" and draw(st.booleans()):
                amount = draw(st.integers(50, 3000))
                cmd = PlaceOrder(new_id(), draw(user), side, "market", None, None, amount, tif, False, draw(stp))
            else:
                cmd = PlaceOrder(new_id(), draw(user), side, "market", None, draw(qty), None, tif, False, draw(stp))
        elif kind == "cancel":
            cmd = CancelOrder(some_id(), draw(st.sampled_from([None, None, None] + USERS)))
        elif kind == "amend":
            owner = draw(st.sampled_from([None, None, None] + USERS))
            new_price = draw(st.one_of(st.none(), st.builds(near_price)))
            new_qty = draw(st.one_of(st.none(), st.integers(1, 12)))
            cmd = AmendOrder(some_id(), owner, new_price, new_qty)
        elif kind == "cancel_all":
            cmd = CancelAll(draw(user))
        elif kind == "halt":
            cmd = Halt()
        elif kind == "resume":
            cmd = Resume()
        elif kind == "configure":  # new limits mid-stream, sometimes invalid ones
            cmd = Configure(
                min_quantity=draw(st.sampled_from([None, "2", "4"])),
                max_quantity=draw(st.sampled_from([None, "12", "3"])),
                min_notional=draw(st.sampled_from([None, "250", "0.5"])),
                price_band_percent=draw(st.sampled_from([None, "4", "7.5", "-1"])),
                max_open_orders=draw(st.sampled_from([None, 2, 3, 0])),
                default_stp=draw(st.sampled_from(STP_MODES)),
            )
        elif kind == "reference":
            cmd = SetReferencePrice(draw(st.sampled_from([0, 96, 100, 104])))
        else:  # malformed or unusual orders: every rejection path gets exercised
            base = dict(order_id=new_id(), user_id=draw(user), side="buy", order_type="limit", price=100, quantity=3)
            field, value = draw(
                st.sampled_from(
                    [
                        ("side", "hold"), ("order_type", "stop"), ("time_in_force", "GTD"),
                        ("price", 0), ("price", -3), ("price", None), ("price", 100.5), ("price", True),
                        ("quantity", 0), ("quantity", None), ("quantity", 2.0), ("quote_amount", 300),
                        ("stp", "BOGUS"), ("post_only", "yes"), ("order_type", "market"),
                    ]
                )
            )
            base[field] = value
            cmd = PlaceOrder(**base)
        shadow.apply(cmd)
        out.append(cmd)
    return config, out


# ---------------------------------------------------------------- helpers


def without_levels(events):
    return [e for e in events if e[0] != BOOK_LEVEL_CHANGED]


def depth_map(engine):
    d = engine.depth()
    return {(side, price): q for side in ("buy", "sell") for price, q in d[side]}


def queues(engine):
    """(side, price) -> open order ids in time priority."""
    out = {}
    for s, side in enumerate(("buy", "sell")):
        for price, _ in engine.depth()[side]:
            out[(side, price)] = [o[0] for o in engine.book.level_orders(s, price)]
    return out


def taker_limit(cmd, engine_before):
    if type(cmd) is PlaceOrder:
        return cmd.price if cmd.order_type == "limit" else None
    if type(cmd) is AmendOrder:
        if cmd.price is not None:
            return cmd.price
        order = engine_before.get(cmd.order_id)
        return None if order is None else order["price"]
    return None


def run_checked(config, commands, engine_class=MatchingEngine):
    """Apply ``commands`` to the engine and the reference, checking every property
    after every command; return the engine's events per command."""
    engine = engine_class(config)
    ref = ReferenceEngine(config)
    levels_from_events = {}
    total_qty = {}  # order id -> (total quantity, side)
    traded = defaultdict(int)  # order id -> lots traded so far
    spent = defaultdict(int)  # quote-order id -> notional units spent
    all_events = []
    for cmd in commands:
        before_orders = {oid: engine.order(oid) for oid in list(engine.book.orders)}
        before_queues = queues(engine)
        limit = taker_limit(cmd, before_orders)

        events = engine.apply(cmd)
        expected = ref.apply(cmd)
        all_events.append(events)

        # Same events as the reference (level changes are checked below).
        assert without_levels(events) == expected, f"diverged on {cmd}"
        # Sequence numbers: one per command, on every event.
        assert {e[1] for e in events} == {engine.seq} and engine.seq == len(all_events)
        # Same book, level by level and in time priority.
        snap = engine.snapshot()
        assert snap["bids"] == ref.snapshot_side("buy")
        assert snap["asks"] == ref.snapshot_side("sell")
        # Structure: never crossed, totals, indexes, best-price cache.
        engine.book.check_invariants()
        # Level events applied incrementally rebuild the depth exactly.
        for e in events:
            if e[0] == BOOK_LEVEL_CHANGED:
                if e[4]:
                    levels_from_events[(e[2], e[3])] = e[4]
                else:
                    levels_from_events.pop((e[2], e[3]), None)
        assert levels_from_events == depth_map(engine)

        if events[0][0] == "command_accepted" and type(cmd) is PlaceOrder:
            total_qty[cmd.order_id] = cmd.quantity
            traded[cmd.order_id] = spent[cmd.order_id] = 0  # an id may be reused once closed
        taker = getattr(cmd, "order_id", None)
        touched = defaultdict(list)  # maker price -> maker ids in the order they were hit
        for e in events:
            if e[0] == ORDER_AMENDED:
                total_qty[e[2]] = e[6]
            elif e[0] == TRADE_EXECUTED:
                _, _, _, price, q, taker_side, maker_oid, _, taker_oid, _ = e
                assert q > 0 and taker_oid == taker
                # Never a fill at a price worse than the taker's limit.
                if limit is not None:
                    assert price <= limit if taker_side == "buy" else price >= limit
                traded[maker_oid] += q
                traded[taker_oid] += q
                spent[taker_oid] += price * q
                if maker_oid not in touched[price]:
                    touched[price].append(maker_oid)
            elif e[0] == ORDER_DONE:
                _, _, oid, _, side, status, reason, filled, remaining, remaining_quote = e
                if oid != taker and reason == "SELF_TRADE":
                    price = next(p for (sd, p), ids in before_queues.items() if oid in ids)
                    touched[price].append(oid)
                # Quantity is conserved: filled + remaining = original, and
                # the filled quantity is exactly what traded.
                assert filled == traded[oid]
                if remaining_quote is None:
                    assert filled + remaining == total_qty[oid]
                else:
                    assert remaining == 0 and remaining_quote + spent[oid] == cmd.quote_amount
                    assert spent[oid] <= cmd.quote_amount
        # FIFO within a level: the makers hit at a price are the head of its queue.
        for price, hit in touched.items():
            queue = next(ids for (sd, p), ids in before_queues.items() if p == price and set(hit) <= set(ids))
            assert hit == queue[: len(hit)], f"FIFO broken at {price}: {hit} vs {queue}"
    for oid, order in ((o, engine.order(o)) for o in engine.book.orders):
        assert order["filled_quantity"] == traded[oid]
        assert order["filled_quantity"] + order["remaining_quantity"] == order["quantity"]
    return engine, all_events


# ---------------------------------------------------------------- properties


@PROPERTY
@given(scenarios())
def test_engine_matches_reference_model_and_keeps_its_invariants(scenario):
    run_checked(*scenario)


@INTERPRETED_PROPERTY
@given(scenarios())
def test_interpreted_source_matches_reference_model_and_keeps_its_invariants(scenario):
    run_checked(*scenario, engine_class=InterpretedEngine)


def check_snapshot_restore(scenario, data, engine_class):
    config, commands = scenario
    whole = engine_class(config)
    expected = [whole.apply(c) for c in commands]
    cut = data.draw(st.integers(0, len(commands)))
    first = engine_class(config)
    for c in commands[:cut]:
        first.apply(c)
    snapshot = json.loads(json.dumps(first.snapshot()))  # survives a JSON round trip
    resumed = engine_class.restore(snapshot)
    assert resumed.snapshot() == first.snapshot()
    assert [resumed.apply(c) for c in commands[cut:]] == expected[cut:]
    assert resumed.snapshot() == whole.snapshot()
    resumed.book.check_invariants()


@PROPERTY
@given(scenarios(max_size=40), st.data())
def test_snapshot_restore_then_rest_of_stream_equals_uninterrupted_run(scenario, data):
    check_snapshot_restore(scenario, data, MatchingEngine)


@INTERPRETED_PROPERTY
@given(scenarios(max_size=40), st.data())
def test_interpreted_snapshot_restore_then_rest_of_stream_equals_uninterrupted_run(scenario, data):
    check_snapshot_restore(scenario, data, InterpretedEngine)


@PROPERTY
@given(scenarios(max_size=40))
def test_same_stream_gives_identical_events_and_state(scenario):
    config, commands = scenario
    one, two = MatchingEngine(config), MatchingEngine(config)
    assert [one.apply(c) for c in commands] == [two.apply(c) for c in commands]
    assert one.snapshot() == two.snapshot()


@PROPERTY
@given(scenarios(max_size=30))
def test_journalled_commands_replay_to_the_same_events(scenario):
    """Commands survive command_to_dict -> JSON -> command_from_dict unchanged."""
    config, commands = scenario
    journal = [json.dumps(command_to_dict(c)) for c in commands]
    replayed = [command_from_dict(json.loads(line)) for line in journal]
    assert replayed == commands
    a, b = MatchingEngine(config), MatchingEngine(config)
    assert [a.apply(c) for c in commands] == [b.apply(c) for c in replayed]


@PROPERTY
@given(scenarios(max_size=40))
def test_events_convert_to_json_dicts(scenario):
    config, commands = scenario
    from services.matching.models import EVENT_FIELDS, event_to_dict

    engine = MatchingEngine(config)
    for c in commands:
        for e in engine.apply(c):
            d = event_to_dict(e, config.symbol)
            assert list(d) == ["type", "market", "seq", *EVENT_FIELDS[e[0]]]
            assert json.loads(json.dumps(d)) == d
