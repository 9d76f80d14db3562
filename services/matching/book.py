"""The resting orders of one market, as plain ints in plain containers.

Layout (chosen by profiling; see docs/matching-engine.md):

* An order is a list ``[order_id, user_id, side, price, remaining, filled,
  quantity, stp, post_only]`` (indices ``OID`` .. ``POST``). ``side`` is 0 for
  buy (bids) and 1 for sell (asks); ``remaining == 0`` marks a dead record.
* Each side is keyed so that *smaller is better*: ``key = -price`` for bids and
  ``key = price`` for asks. One ascending order then serves both sides.
* ``levels[side]`` maps key -> level ``[total, queue, compact_at]``: the open
  quantity of the level, a ``list`` of order records in time priority, and the
  queue length that triggers dropping dead records. A cancel removes its
  record from a short queue (``SHORT_QUEUE``) at once and otherwise only marks
  it dead (O(1)); matching walks the queue with an index and drops the
  consumed front (filled, expired and dead records) with one ``del
  queue[:i]`` per level, and ``rest`` compacts a queue whose length has
  doubled. (A list is cheaper than a ``deque`` here: ``[order]`` costs a
  third of ``deque((order,))``, and ``queue[i]`` is a specialised C index.)
* ``heaps[side]`` is a binary heap of keys whose smallest live entry is the
  best price, kept in ``best[side]`` for O(1) reads. Entries of removed levels
  are skipped lazily.
* ``index[side]`` is a ``SortedList`` of keys in price order for ordered walks
  (depth, snapshot, FOK). It may hold keys of removed levels (``known[side]`` is
  the same key set, for O(1) membership). Heap and index are each rebuilt from
  the live levels when they exceed ``2 * live + PRUNE_SLACK`` entries, so both
  stay O(live levels) and the rebuild cost is amortised O(1) per level.

``SortedList.add`` + ``remove`` cost about 2 us and ``irange`` about 2 us on
the reference machine, so the hot path touches the sorted index only when a
price is used for the first time since the last pruning; best-price upkeep is
C-level ``heapq`` work.
"""

from heapq import heapify, heappop, heappush
from typing import Hashable, Optional

from sortedcontainers import SortedList

from .models import SIDES

# Order record fields.
OID, UID, SIDE, PRICE, REM, FILLED, QTY, STP, POST = range(9)
# Level fields.
TOTAL, QUEUE, COMPACT_AT = range(3)

COMPACT_MIN = 16  # a queue is never compacted below this length
SHORT_QUEUE = 8  # a cancel removes its record from a queue this short at once
PRUNE_SLACK = 64  # stale heap/index entries tolerated beyond the live count


def key_of(side: int, price: int) -> int:
    return -price if side == 0 else price


def price_of(side: int, key: int) -> int:
    return -key if side == 0 else key


class OrderBook:
    """Two sides of price levels plus an order index and a per-user index."""

    __slots__ = ("levels", "heaps", "index", "known", "best", "orders", "user_orders")

    def __init__(self) -> None:
        self.levels: tuple[dict, dict] = ({}, {})
        self.heaps: tuple[list, list] = ([], [])
        self.index: tuple[SortedList, SortedList] = (SortedList(), SortedList())
        self.known: tuple[set, set] = (set(), set())
        self.best: list = [None, None]
        self.orders: dict = {}
        self.user_orders: dict = {}

    # ------------------------------------------------------------ mutation

    def rest(self, order: list) -> int:
        """Append a live order record to the back of its level; return the level total."""
        side = order[SIDE]
        key = -order[PRICE] if side == 0 else order[PRICE]
        levels = self.levels[side]
        level = levels.get(key)
        if level is None:
            levels[key] = level = [order[REM], [order], COMPACT_MIN]
            self.level_added(side, key)
        else:
            level[TOTAL] += order[REM]
            queue = level[QUEUE]
            queue.append(order)
            if len(queue) > level[COMPACT_AT]:
                compact(level)
        oid = order[OID]
        self.orders[oid] = order
        user_orders = self.user_orders.get(order[UID])
        if user_orders is None:
            self.user_orders[order[UID]] = {oid: order}
        else:
            user_orders[oid] = order
        return level[TOTAL]

    def unlink(self, order: list) -> int:
        """Take a live order out of the book (record marked dead); return its level's new total."""
        oid = order[OID]
        del self.orders[oid]
        user_orders = self.user_orders[order[UID]]
        del user_orders[oid]
        if not user_orders:
            del self.user_orders[order[UID]]
        side = order[SIDE]
        key = -order[PRICE] if side == 0 else order[PRICE]
        level = self.levels[side][key]
        total = level[TOTAL] - order[REM]
        order[REM] = 0
        level[TOTAL] = total
        if not total:
            self.level_removed(side, key)
        elif len(level[QUEUE]) <= SHORT_QUEUE:
            level[QUEUE].remove(order)
        return total

    def level_added(self, side: int, key: int) -> None:
        """Book-keeping after ``levels[side][key]`` was created."""
        heap = self.heaps[side]
        heappush(heap, key)
        best = self.best[side]
        if best is None or key < best:
            self.best[side] = key
        known = self.known[side]
        if key not in known or len(heap) > 2 * len(self.levels[side]) + PRUNE_SLACK:
            self.index_level(side, key)

    def index_level(self, side: int, key: int) -> None:
        """The rare part of ``level_added``, after the heap push and best update.

        Adds a first-seen key to the sorted index and rebuilds heap or index
        when they hold more than ``2 * live + PRUNE_SLACK`` entries. The engine's
        fast path inlines the rest of ``level_added`` and calls this only when
        ``key not in known[side]`` or the heap is over that size.
        """
        heap = self.heaps[side]
        live = len(self.levels[side])
        known = self.known[side]
        if key not in known:
            known.add(key)
            self.index[side].add(key)
            if len(known) > 2 * live + PRUNE_SLACK:
                known.clear()
                known.update(self.levels[side])
                self.index[side].clear()
                self.index[side].update(known)
        if len(heap) > 2 * live + PRUNE_SLACK:
            heap[:] = self.levels[side]
            heapify(heap)

    def level_removed(self, side: int, key: int) -> None:
        """Delete ``levels[side][key]`` and move the best price if it was the best."""
        levels = self.levels[side]
        del levels[key]
        if key == self.best[side]:
            heap = self.heaps[side]
            while heap and heap[0] not in levels:
                heappop(heap)
            self.best[side] = heap[0] if heap else None

    # ------------------------------------------------------------ queries

    def best_bid(self) -> Optional[int]:
        """Best bid price in ticks, or None. O(1)."""
        best = self.best[0]
        return None if best is None else -best

    def best_ask(self) -> Optional[int]:
        """Best ask price in ticks, or None. O(1)."""
        return self.best[1]

    def keys_in_order(self, side: int):
        """Live keys of one side, best first."""
        levels = self.levels[side]
        for key in self.index[side]:
            if key in levels:
                yield key

    def depth(self, n: Optional[int] = None) -> dict:
        """``{"buy": [(price, quantity), ...], "sell": [...]}``, best first, ``n`` levels per side."""
        out = {}
        for side in (0, 1):
            rows = []
            levels = self.levels[side]
            if n is None or n > 0:
                for key in self.keys_in_order(side):
                    rows.append((price_of(side, key), levels[key][TOTAL]))
                    if n is not None and len(rows) >= n:
                        break
            out[SIDES[side]] = rows
        return out

    def level_orders(self, side: int, price: int) -> list:
        """Live order records of one level in time priority."""
        level = self.levels[side].get(key_of(side, price))
        if level is None:
            return []
        return [o for o in level[QUEUE] if o[REM]]

    def order(self, order_id) -> Optional[dict]:
        order = self.orders.get(order_id)
        return None if order is None else order_view(order)

    def open_orders(self, user_id: Hashable) -> list:
        """The user's open orders as dicts, ascending order id."""
        user_orders = self.user_orders.get(user_id)
        if not user_orders:
            return []
        return [order_view(user_orders[oid]) for oid in sorted(user_orders)]

    def open_order_count(self, user_id: Hashable) -> int:
        user_orders = self.user_orders.get(user_id)
        return len(user_orders) if user_orders else 0

    # ------------------------------------------------------------ snapshot

    def snapshot_levels(self, side: int) -> list:
        """``[[price, [order, ...]], ...]`` best first, orders in time priority."""
        out = []
        levels = self.levels[side]
        for key in self.keys_in_order(side):
            queue = [
                [o[OID], o[UID], o[QTY], o[REM], o[FILLED], o[STP], o[POST]]
                for o in levels[key][QUEUE]
                if o[REM]
            ]
            out.append([price_of(side, key), queue])
        return out

    def restore_levels(self, side: int, rows: list) -> None:
        for price, queue in rows:
            for oid, uid, qty, rem, filled, stp, post in queue:
                self.rest([oid, uid, side, price, rem, filled, qty, stp, post])

    # ------------------------------------------------------------ checks

    def check_invariants(self) -> None:
        """Raise AssertionError if the structure is inconsistent (tests use this)."""
        seen = {}
        for side in (0, 1):
            levels = self.levels[side]
            live_keys = set(levels)
            assert live_keys <= self.known[side], "index misses a level"
            assert set(self.index[side]) == self.known[side], "index and known set differ"
            assert live_keys <= set(self.heaps[side]), "heap misses a level"
            expected_best = min(live_keys) if live_keys else None
            assert self.best[side] == expected_best, f"best cache {self.best[side]} != {expected_best}"
            for key, level in levels.items():
                live = [o for o in level[QUEUE] if o[REM]]
                assert live, f"empty level {key} kept"
                assert level[TOTAL] == sum(o[REM] for o in live), f"level {key} total drifted"
                for o in live:
                    assert o[SIDE] == side and key_of(side, o[PRICE]) == key, "order on the wrong level"
                    assert o[REM] > 0 and o[FILLED] >= 0 and o[REM] + o[FILLED] == o[QTY], "quantity not conserved"
                    assert o[OID] not in seen, f"order {o[OID]} rests twice"
                    seen[o[OID]] = o
        assert seen.keys() == self.orders.keys(), "order index differs from the book"
        for oid, o in seen.items():
            assert self.orders[oid] is o, "order index points to a stale record"
        users = {}
        for oid, o in seen.items():
            users.setdefault(o[UID], {})[oid] = o
        assert users.keys() == self.user_orders.keys(), "user index has wrong users"
        for uid, orders in users.items():
            assert orders.keys() == self.user_orders[uid].keys(), f"user index wrong for {uid!r}"
        bid, ask = self.best_bid(), self.best_ask()
        assert bid is None or ask is None or bid < ask, f"book crossed: {bid} >= {ask}"


def compact(level: list) -> None:
    """Drop dead records from a level's queue (keeps time priority)."""
    queue = level[QUEUE]
    live = [o for o in queue if o[REM]]
    queue[:] = live
    level[COMPACT_AT] = max(COMPACT_MIN, 2 * len(live))


def order_view(order: list) -> dict:
    """A plain dict of an order record (ints: ticks, lots)."""
    return {
        "order_id": order[OID],
        "user_id": order[UID],
        "side": SIDES[order[SIDE]],
        "price": order[PRICE],
        "quantity": order[QTY],
        "remaining_quantity": order[REM],
        "filled_quantity": order[FILLED],
        "stp": order[STP],
        "post_only": order[POST],
    }
