"""Read-window arithmetic for the RPC reads (pure): which time window a
request covers, which partitions that is, and how a page of trades is cut.

Candles: ``[start, end)`` on ``open_time``, at most ``limit`` buckets of time:
* no start: the ``limit`` buckets ending with the one that holds ``end - 1``
  (``end`` defaults to now + 1 ms, i.e. up to and including the current bucket);
* with start: ``limit`` buckets from the first bucket starting at or after start.
The answer says which window it covered; ``next_start`` is set when the
requested range went further (call again from there). Empty buckets have no
candle: intervals without trades are absent, not zero-filled.

Trades: newest first, ``[start, end)`` on ``executed_at``. A page never splits
a millisecond: when it is cut, ``next_end`` continues exactly where it stopped
(call again with ``end=next_end``). If one millisecond alone holds more than
``limit`` trades, the page holds that millisecond whole.
"""
from __future__ import annotations

from typing import Optional, Sequence

from services.marketdata.candles import INTERVALS, bucket_start


def candle_window(interval: str, start: Optional[int], end: Optional[int], limit: int,
                  now: int) -> tuple[int, int, Optional[int]]:
    """-> (window start, window end, next_start or None)."""
    step = INTERVALS[interval].ms
    if start is None:
        end = now + 1 if end is None else end
        first = bucket_start(end - 1, interval) - (limit - 1) * step
        return first, end, None
    first = start if bucket_start(start, interval) == start else bucket_start(start, interval) + step
    window_end = first + limit * step
    if end is None:
        return start, window_end, None
    if window_end < end:
        return start, window_end, window_end
    return start, end, None


def cut_trade_page(rows: Sequence, limit: int) -> tuple[list, Optional[int], Optional[int]]:
    """``rows``: trades (objects with ``executed_at``) newest first; when more
    exist beyond them, at least ``limit + 1`` of them.
    -> (page, next_end, split_ms): ``split_ms`` is set when ``limit`` falls
    inside one millisecond; the caller then fetches that millisecond whole
    and calls ``resolve_split``."""
    if len(rows) <= limit:
        return list(rows), None, None
    boundary = rows[limit - 1].executed_at
    if rows[limit].executed_at != boundary:
        return list(rows[:limit]), boundary, None
    return [], None, boundary


def resolve_split(rows: Sequence, limit: int, split_ms: int,
                  group: Sequence) -> tuple[list, int]:
    """The page without the split millisecond (continue at ``split_ms + 1``),
    or, when that millisecond is all there is, that millisecond whole."""
    page = [r for r in rows[:limit] if r.executed_at > split_ms]
    if page:
        return page, split_ms + 1
    return list(group), split_ms
