"""models.refused_until_placed: which refusals a host applies again when the
same command comes again (a nack can deliver a cancel before its order's
place; tests/integration/matching/test_cancel_before_place.py). The compiled
engine, the interpreted source and the reference model agree on it."""
import pytest
from matching_reference import ReferenceEngine

from bench.engine_bench import load_interpreted_engine
from services.matching.engine import MatchingEngine
from services.matching.models import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Halt,
    MarketConfig,
    PlaceOrder,
    refused_until_placed,
)

CONFIG = MarketConfig("BTC-USDT", "BTC", "USDT", "0.01", "0.001")
ENGINES = [MatchingEngine, load_interpreted_engine().MatchingEngine, ReferenceEngine]
PLACE = PlaceOrder(1, "alice", "buy", price=10_000, quantity=1_000)


def outcomes(engine_class, *commands):
    engine = engine_class(CONFIG)
    return [refused_until_placed(engine.apply(command)) for command in commands]


@pytest.mark.parametrize("engine_class", ENGINES)
def test_a_cancel_or_amend_of_an_order_not_on_the_book_is_refused_until_placed(engine_class):
    assert outcomes(engine_class,
                    CancelOrder(1, "alice"),
                    AmendOrder(1, "alice", 9_990, None),
                    CancelOrder(1, None)) == [True, True, True]


@pytest.mark.parametrize("engine_class", ENGINES)
def test_other_outcomes_are_final(engine_class):
    assert outcomes(engine_class,
                    PLACE,                                   # accepted
                    PLACE,                                   # DUPLICATE_ORDER_ID
                    AmendOrder(1, "alice", 9_990, None),     # amended
                    AmendOrder(1, "alice", 0, None),         # INVALID_PRICE
                    CancelAll("bob"),                        # nothing to cancel
                    CancelOrder(1, "alice"),                 # cancelled
                    ) == [False] * 6
    # A halted market refuses an amend for being halted, whatever the book.
    assert outcomes(engine_class, Halt(), AmendOrder(2, "alice", 9_990, None)) == [False, False]


@pytest.mark.parametrize("engine_class", ENGINES)
def test_a_cancel_of_another_users_order_is_refused_again_on_a_copy(engine_class):
    """UNKNOWN_ORDER names both: a copy is applied again and refused again."""
    assert outcomes(engine_class, PLACE, CancelOrder(1, "bob"), CancelOrder(1, "bob")) == [
        False, True, True]
