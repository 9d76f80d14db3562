"""Memcached access: a pooled client with JSON values and a key prefix.

A cache is an optimisation, never a source of truth: an unreachable Memcached
reads as a miss (ignore_exc) and a failed write is dropped, so callers fall
back to the real store and never see an error from here.
"""
from __future__ import annotations

import json

from nameko.extensions import DependencyProvider
from pymemcache.client.base import PooledClient
from pymemcache.exceptions import MemcacheError

from services.common.config import Settings, load_settings


class Cache:
    def __init__(self, client: PooledClient, prefix: str):
        self.client = client
        self.prefix = prefix

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def get(self, key: str):
        raw = self.client.get(self._key(key))
        return None if raw is None else json.loads(raw)

    def set(self, key: str, value, ttl: int) -> bool:
        """Store for ``ttl`` seconds (0 is not allowed: every entry must expire)."""
        if ttl <= 0:
            raise ValueError("cache entries must expire")
        try:
            return bool(self.client.set(self._key(key), json.dumps(value, separators=(",", ":")),
                                        expire=ttl, noreply=False))
        except (OSError, MemcacheError):
            return False

    def delete(self, key: str) -> bool:
        """False when Memcached could not be told; callers that must not serve
        stale data keep entries short-lived for exactly this case."""
        try:
            self.client.delete(self._key(key), noreply=False)
            return True
        except (OSError, MemcacheError):
            return False


def make_cache(settings: Settings, prefix: str = "") -> Cache:
    client = PooledClient((settings.server_host("memcached"), settings.int("EXCHANGE_MEMCACHED_PORT")),
                          connect_timeout=0.5, timeout=0.5, ignore_exc=True,
                          max_pool_size=20, no_delay=True)
    return Cache(client, prefix)


class MemcachedCache(DependencyProvider):
    def setup(self):
        self.cache = make_cache(load_settings(), self.container.config.get("CACHE_PREFIX", ""))

    def stop(self):
        self.cache.client.close()

    kill = stop

    def get_dependency(self, worker_ctx):
        return self.cache
