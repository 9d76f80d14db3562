"""The depth book: only newer seqs apply, a gap makes the book stale, a
snapshot plus the buffered events resynchronises it."""
from decimal import Decimal as D

from services.marketdata import depth
from services.marketdata.depth import STALE, SYNCED, UNSYNCED, DepthBook


def ch(side, price, qty):
    return (side, D(price), D(qty))


def test_a_book_seen_from_the_first_command_is_synced():
    book = DepthBook("BTC-USDT")
    assert book.apply(1, 1000, [ch("buy", "99.00", "1.0"), ch("sell", "101.00", "2.0")]) == "applied"
    assert book.apply(2, 1001, [ch("buy", "100.00", "0.5")]) == "applied"
    assert book.state == SYNCED and book.seq == 2
    snap = book.snapshot(10)
    assert snap["bids"] == [["100.00", "0.5"], ["99.00", "1.0"]]     # best first
    assert snap["asks"] == [["101.00", "2.0"]]
    assert book.best()["best_bid"] == ["100.00", "0.5"]
    assert book.snapshot(1)["bids"] == [["100.00", "0.5"]]


def test_old_and_duplicate_events_are_ignored_and_zero_removes_a_level():
    book = DepthBook("BTC-USDT")
    book.apply(1, 1, [ch("buy", "99.00", "1.0")])
    book.apply(2, 2, [ch("buy", "99.00", "0")])
    assert book.apply(2, 2, [ch("buy", "99.00", "5.0")]) == "ignored"
    assert book.apply(1, 1, [ch("buy", "99.00", "5.0")]) == "ignored"
    assert book.snapshot(10)["bids"] == []


def test_a_late_event_within_the_reorder_tolerance_is_waited_for():
    book = DepthBook("BTC-USDT")
    book.apply(1, 1, [ch("buy", "99.00", "1.0")])
    assert book.apply(3, 3, [ch("buy", "99.00", "3.0")]) == "buffered"
    assert book.synced and book.seq == 1          # consistent, at seq 1
    assert book.apply(2, 2, [ch("buy", "99.00", "2.0")]) == "applied"
    assert book.seq == 3 and book.snapshot(1)["bids"] == [["99.00", "3.0"]]


def test_a_gap_makes_the_book_stale_until_a_snapshot_and_the_buffer_resync_it():
    book = DepthBook("BTC-USDT")
    book.apply(1, 1, [ch("buy", "99.00", "1.0")])
    outcomes = [book.apply(s, s, [ch("sell", "101.00", str(s))]) for s in range(3, 4 + depth.REORDER_TOLERANCE)]
    assert outcomes[-1] == "gap" and book.state == STALE and not book.synced
    # the engine's snapshot after seq 50, then the buffered 51.. are replayed
    book.load_snapshot(50, 50, [(D("98.00"), D("7.0"))], [(D("101.00"), D("50"))])
    assert book.synced and book.seq == 3 + depth.REORDER_TOLERANCE
    assert book.snapshot(5)["asks"] == [["101.00", str(3 + depth.REORDER_TOLERANCE)]]
    assert book.snapshot(5)["bids"] == [["98.00", "7.0"]]


def test_a_book_joined_mid_stream_stays_unsynced():
    book = DepthBook("BTC-USDT")
    assert book.apply(7, 7, [ch("buy", "99.00", "1.0")]) == "buffered"
    assert book.state == UNSYNCED and not book.synced


def test_prev_seq_lets_the_engine_skip_seqs_that_changed_no_level():
    book = DepthBook("BTC-USDT")
    assert book.apply(4, 4, [ch("buy", "99.00", "1.0")], prev_seq=0) == "applied"
    assert book.apply(9, 9, [ch("buy", "99.00", "2.0")], prev_seq=4) == "applied"
    assert book.apply(12, 12, [ch("buy", "99.00", "3.0")], prev_seq=10) == "buffered"
    assert book.seq == 9
