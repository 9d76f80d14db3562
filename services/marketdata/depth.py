"""Order-book depth per market, maintained from ``book_changed`` events (pure).

A book is trustworthy (``synced``) only if it has seen every change since a
known state: either the market's very first command (``seq == 1``, the engine
numbers commands from 1) or an engine snapshot (``load_snapshot``).

Sequence rules:

* an event with ``seq <= held seq`` is old or a duplicate: ignored;
* the next event must continue the held one: ``prev_seq == held`` when the
  event carries ``prev_seq`` (the seq of the market's previous book_changed --
  requested from the matching service, see docs/marketdata.md), otherwise
  ``seq == held + 1``;
* an event further ahead waits in a reorder buffer until the missing ones
  arrive; when more than ``REORDER_TOLERANCE`` events wait, the missing one is
  taken as lost -- a gap: the book turns ``stale`` and stays so until a
  snapshot is loaded. Buffered events (bounded) are replayed on top of it.

Where the snapshot comes from (the engine, over RPC) is issue 5's; until then
a stale or unsynced book answers ``DepthUnavailable`` rather than guessing.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Iterable, Optional

from sortedcontainers import SortedDict

from services.marketdata.models import format_decimal

SYNCED = "synced"
UNSYNCED = "unsynced"   # never saw a known starting point
STALE = "stale"         # saw a gap

MAX_BUFFERED = 10_000
# A synced book waits for a missing seq while fewer than this many later events
# are buffered (delivery may reorder slightly), then declares a gap.
REORDER_TOLERANCE = 100


def _follows(held: int, seq: int, prev_seq: Optional[int]) -> bool:
    return prev_seq == held if prev_seq is not None else seq == held + 1


def _first(seq: int, prev_seq: Optional[int]) -> bool:
    return prev_seq == 0 if prev_seq is not None else seq == 1


class DepthBook:
    def __init__(self, market: str):
        self.market = market
        self.state = UNSYNCED
        self.seq: Optional[int] = None
        self.at: Optional[int] = None
        self.bids: SortedDict = SortedDict()   # price -> quantity, best = last
        self.asks: SortedDict = SortedDict()   # price -> quantity, best = first
        self._buffer: dict[int, tuple] = {}

    @property
    def synced(self) -> bool:
        """The held book is exactly the engine's book after command ``seq``
        (events after it may be waiting in the reorder buffer)."""
        return self.state == SYNCED

    def apply(self, seq: int, at: int, changes: Iterable[tuple[str, Decimal, Decimal]],
              prev_seq: Optional[int] = None) -> str:
        """Returns ``applied``, ``ignored`` (old or duplicate), ``buffered``
        (waiting for an earlier event) or ``gap`` (the book just turned stale)."""
        changes = tuple(changes)
        if self.state == SYNCED:
            if seq <= self.seq or seq in self._buffer:
                return "ignored"
            if _follows(self.seq, seq, prev_seq):
                self._apply(seq, at, changes)
                self._replay()
                return "applied"
            self._hold(seq, at, changes, prev_seq)
            if len(self._buffer) > REORDER_TOLERANCE:
                self.state = STALE
                return "gap"
            return "buffered"
        if self.state == UNSYNCED and self.seq is None and _first(seq, prev_seq):
            self.state = SYNCED
            self._apply(seq, at, changes)
            self._replay()
            return "applied"
        self._hold(seq, at, changes, prev_seq)
        return "buffered"

    def load_snapshot(self, seq: int, at: int, bids: Iterable[tuple[Decimal, Decimal]],
                      asks: Iterable[tuple[Decimal, Decimal]]) -> None:
        """Replace the book with an engine snapshot taken after command ``seq``,
        then replay the buffered events that follow it."""
        self.bids = SortedDict({p: q for p, q in bids if q > 0})
        self.asks = SortedDict({p: q for p, q in asks if q > 0})
        self.seq, self.at, self.state = seq, at, SYNCED
        self._replay()

    def snapshot(self, limit: int) -> dict:
        bids = self.bids.items()[-limit:] if limit else []
        asks = self.asks.items()[:limit] if limit else []
        return {"market": self.market, "seq": self.seq, "at": self.at,
                "bids": [[format_decimal(p), format_decimal(q)] for p, q in reversed(bids)],
                "asks": [[format_decimal(p), format_decimal(q)] for p, q in asks]}

    def best(self) -> dict:
        bid = self.bids.peekitem(-1) if self.bids else None
        ask = self.asks.peekitem(0) if self.asks else None
        return {"market": self.market, "seq": self.seq, "at": self.at,
                "best_bid": [format_decimal(bid[0]), format_decimal(bid[1])] if bid else None,
                "best_ask": [format_decimal(ask[0]), format_decimal(ask[1])] if ask else None}

    # -- internals -------------------------------------------------------------
    def _apply(self, seq: int, at: int, changes) -> None:
        for side, price, quantity in changes:
            levels = self.bids if side == "buy" else self.asks
            if quantity > 0:
                levels[price] = quantity
            else:
                levels.pop(price, None)
        self.seq, self.at = seq, at

    def _hold(self, seq, at, changes, prev_seq) -> None:
        self._buffer[seq] = (at, changes, prev_seq)
        while len(self._buffer) > MAX_BUFFERED:
            del self._buffer[min(self._buffer)]

    def _replay(self) -> None:
        """Apply buffered events that continue the held seq, in order; drop old ones."""
        for seq in sorted(self._buffer):
            at, changes, prev_seq = self._buffer[seq]
            if seq <= self.seq:
                del self._buffer[seq]
            elif _follows(self.seq, seq, prev_seq):
                del self._buffer[seq]
                self._apply(seq, at, changes)
            else:
                return
