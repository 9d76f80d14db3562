"""Memcached for marketdata: keys, TTLs and the never-raising client with a
breaker (docs/marketdata.md)."""
from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Optional

from pymemcache.exceptions import MemcacheError

from services.common import metrics
from services.common.cache import Cache

log = logging.getLogger(__name__)

# Memcached TTLs (seconds); see docs/marketdata.md for why each is safe.
TTL_CANDLE_VERSION = 3600
TTL_CANDLE_CHUNK = 300
TTL_RECENT_TRADES = 60
TTL_TICKER = 120
TTL_DEPTH = 10

CANDLE_FIELDS = 8      # open_time, open, high, low, close, volume, quote_volume, trade_count


def pack_candle_rows(rows) -> Optional[bytes]:
    """Public candle rows as one ASCII text, every field of every row
    separated by a comma: ``open_time,open,high,low,close,volume,quote_volume,
    trade_count,open_time,...`` (decimal strings hold no comma; None if one
    did). Unpacking it is one ``split`` and a ``zip``, several times cheaper
    than JSON's nested lists (bench/README.md)."""
    text = ",".join(map(str, (value for row in rows for value in row)))
    if rows and text.count(",") != len(rows) * CANDLE_FIELDS - 1:
        return None
    return text.encode("ascii")


def unpack_candle_rows(raw: bytes) -> Optional[tuple]:
    """``pack_candle_rows``'s text back as row tuples; None (a miss) for
    anything that is not such a text."""
    if not raw:
        return ()
    try:
        fields = raw.decode("ascii").split(",")
        if len(fields) % CANDLE_FIELDS:
            return None
        return tuple(zip(map(int, fields[0::8]), fields[1::8], fields[2::8], fields[3::8],
                         fields[4::8], fields[5::8], fields[6::8], map(int, fields[7::8])))
    except (UnicodeDecodeError, ValueError):
        return None


class HotCache:
    """Memcached with this service's keys (docs/marketdata.md). Never raises:
    an unreachable Memcached reads as a miss and a failed write returns False.

    After a failure the cache is skipped for ``OUTAGE_BACKOFF`` seconds (a
    breaker): a Memcached that hangs instead of refusing connections would
    otherwise cost every call its full 0.5 s timeout, ingestion included.
    """

    OUTAGE_BACKOFF = 1.0

    def __init__(self, cache: Cache):
        self.cache = cache
        cache.client.ignore_exc = False   # failures must be seen to open the breaker
        self._closed_until = 0.0

    def _call(self, fn, default):
        if time.monotonic() < self._closed_until:
            return default
        try:
            return fn()
        except (OSError, MemcacheError, ValueError):
            self._closed_until = time.monotonic() + self.OUTAGE_BACKOFF
            return default

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._closed_until

    def _dump(self, value) -> str:
        return json.dumps(value, separators=(",", ":"))

    @staticmethod
    def _load(raw):
        """A value that does not decode (written by something else) is a miss."""
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def get(self, key: str):
        raw = self._call(lambda: self.cache.client.get(self.cache._key(key)), None)
        value = None if raw is None else self._load(raw)
        metrics.count_cache_lookups("get", hits=int(value is not None), misses=int(value is None))
        return value

    def set(self, key: str, value, ttl: int) -> bool:
        return bool(self._call(lambda: self.cache.client.set(
            self.cache._key(key), self._dump(value), expire=ttl, noreply=False), False))

    def add(self, key: str, value, ttl: int) -> bool:
        """Store only if absent: cache fills after a miss use this, so they
        never overwrite what an ingest published meanwhile."""
        return bool(self._call(lambda: self.cache.client.add(
            self.cache._key(key), self._dump(value), expire=ttl, noreply=False), False))

    def delete(self, key: str) -> bool:
        return self._call(lambda: self.cache.client.delete(
            self.cache._key(key), noreply=False) or True, False)

    def get_raw(self, key: str) -> Optional[bytes]:
        """The stored bytes, not decoded (values in a format of their own)."""
        raw = self._call(lambda: self.cache.client.get(self.cache._key(key)), None)
        metrics.count_cache_lookups("get_raw", hits=int(raw is not None), misses=int(raw is None))
        return raw

    def set_raw(self, key: str, value: bytes, ttl: int) -> bool:
        return bool(self._call(lambda: self.cache.client.set(
            self.cache._key(key), value, expire=ttl, noreply=False), False))

    def get_many(self, keys: list[str]) -> dict:
        full = {self.cache._key(k): k for k in keys}
        found = self._call(lambda: self.cache.client.get_many(list(full)), {})
        values = {full[k]: value for k, v in found.items()
                  if (value := self._load(v)) is not None}
        metrics.count_cache_lookups("get_many", hits=len(values), misses=len(full) - len(values))
        return values

    # -- keys --------------------------------------------------------------------
    @staticmethod
    def candle_version_key(market: str, interval: str, part: int) -> str:
        return f"md1:cv:{market}:{interval}:{part}"

    @staticmethod
    def candle_chunk_key(market: str, interval: str, part: int, version: str) -> str:
        """The partition's rows in the compact text of ``pack_candle_rows``
        (``md1:c:`` held JSON; a new name so the two are never confused)."""
        return f"md1:cc:{market}:{interval}:{part}:{version}"

    @staticmethod
    def recent_key(market: str) -> str:
        return f"md1:trades:{market}"

    @staticmethod
    def ticker_key(market: str) -> str:
        return f"md1:ticker:{market}"

    @staticmethod
    def depth_key(market: str) -> str:
        return f"md1:depth:{market}"

    @staticmethod
    def bbo_key(market: str) -> str:
        return f"md1:bbo:{market}"

    # -- candles: versioned chunks -----------------------------------------------
    def candle_version(self, market: str, interval: str, part: int) -> Optional[str]:
        """The partition's current version token, created if missing; None
        when Memcached is unreachable."""
        key = self.candle_version_key(market, interval, part)
        version = self.get(key)
        if version is None:
            self.add(key, uuid.uuid4().hex[:12], TTL_CANDLE_VERSION)
            version = self.get(key)
        return version

    def bump_candles(self, market: str, interval: str, part: int) -> bool:
        """After the partition's rows changed: entries under older tokens are
        unreachable from now on."""
        return self.set(self.candle_version_key(market, interval, part),
                        uuid.uuid4().hex[:12], TTL_CANDLE_VERSION)
