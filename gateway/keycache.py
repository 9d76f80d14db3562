"""Verified API keys cached in each gateway process.

Without it every signed request costs a ``users.verify_request`` RPC (2.5 ms
of users' CPU and a broker round trip per request). With it the gateway asks
users once per key for the key's verification material
(``users.verification_material``: owner, permissions, IP allow-list, expiry,
revoked, the owner's account state and the HMAC secret) and checks
signatures itself with the one verification rule (``services.users.apikeys.
verify``, pure). Only acceptance is decided here: a request the cached
material refuses is re-decided, and audited, by ``users.verify_request``, so
every refusal keeps its code and audit row, and a stale entry can only ever
cause one extra RPC, never a wrong refusal.

Freshness (docs/security.md):

* every gateway process has its own exclusive queue (``gateway.keycache.<id>``)
  bound to users' ``api_key_revoked``, ``api_key_changed``, ``user_frozen``,
  ``user_unfrozen`` and ``user_closed``; each event drops the key's or the
  user's entries as it is delivered;
* entries are served only while that consumer is consuming: when its
  connection drops, the cache is emptied and every request goes to users until
  it is back (events sent meanwhile are not lost to a cached entry);
* an entry fetched while an event was handled is not kept (it may predate it);
* every entry expires ``EXCHANGE_GATEWAY_KEY_CACHE_TTL_S`` seconds (default
  60) after it was fetched, whatever happens: the bound on a revocation whose
  event was lost is that TTL. ``0`` turns the cache off.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Callable

import eventlet
from kombu import Connection, Consumer, Exchange, Queue

from services.common.consumer import drain_while, keep_consuming
from services.common.events import (
    API_KEY_CHANGED, API_KEY_REVOKED, USER_CLOSED, USER_FROZEN, USER_UNFROZEN)
from services.users.accounts import AccountState
from services.users.apikeys import KeyRecord

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 60.0
MAX_ENTRIES = 100_000
RECONNECT_DELAY_S = 1.0
KEY_EVENTS = (API_KEY_REVOKED, API_KEY_CHANGED)
USER_EVENTS = (USER_FROZEN, USER_UNFROZEN, USER_CLOSED)
KEY_EVENT_NAMES = frozenset(e.name for e in KEY_EVENTS)
USER_EVENT_NAMES = frozenset(e.name for e in USER_EVENTS)


@dataclass(frozen=True)
class Material:
    """What verifying one key's requests needs (``secret`` None: users decides)."""
    record: KeyRecord
    secret: str | None

    def __repr__(self) -> str:   # never the secret, even in a traceback
        return f"Material(key_id={self.record.key_id!r}, user_id={self.record.user_id!r})"


def material_from(answer: dict | None) -> Material | None:
    """``users.verification_material``'s answer as a Material."""
    if answer is None:
        return None
    record = KeyRecord(answer["key_id"], answer["user_id"], tuple(answer["permissions"]),
                       tuple(answer["ip_allowlist"]) if answer.get("ip_allowlist") else None,
                       answer.get("expires_at"), bool(answer["revoked"]),
                       AccountState(answer["account_state"]))
    return Material(record, answer.get("secret"))


@dataclass
class _Entry:
    material: Material
    fetched_at: float


class KeyCache:
    """Material by API key. ``fetch(api_key)`` asks users; ``clock`` is monotonic seconds."""

    def __init__(self, fetch: Callable[[str], Material | None], ttl_s: float = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.monotonic, max_entries: int = MAX_ENTRIES):
        self.fetch = fetch
        self.ttl_s = ttl_s
        self.clock = clock
        self.max_entries = max_entries
        self._entries: dict[str, _Entry] = {}
        # Bumped by every eviction and by the consumer going live or down: a
        # fetch that saw another epoch is used once, not kept.
        self.epoch = 0
        self.live = False
        self.hits = self.fetches = self.evictions = 0

    def material(self, api_key: str) -> Material | None:
        if self.live:
            entry = self._entries.get(api_key)
            if entry is not None and self.clock() - entry.fetched_at < self.ttl_s:
                self.hits += 1
                return entry.material
        epoch, started = self.epoch, self.clock()
        self.fetches += 1
        found = self.fetch(api_key)
        if found is not None and self.live and self.epoch == epoch:
            if len(self._entries) >= self.max_entries:
                self._drop_expired()
            if len(self._entries) < self.max_entries:
                self._entries[api_key] = _Entry(found, started)
        return found

    def forget(self, api_key: str) -> None:
        """Drop one key's entry (its material refused a request users accepted)."""
        if self._entries.pop(api_key, None) is not None:
            self.epoch += 1
            self.evictions += 1

    def evict(self, key_id: str | None = None, user_id: str | None = None) -> int:
        """Drop the entries of ``key_id`` and of every key of ``user_id``."""
        self.epoch += 1
        stale = [api_key for api_key, entry in self._entries.items()
                 if entry.material.record.key_id == key_id
                 or entry.material.record.user_id == user_id]
        for api_key in stale:
            del self._entries[api_key]
        self.evictions += len(stale)
        return len(stale)

    def set_live(self, live: bool) -> None:
        """The consumer started (True) or lost (False) its queue: start empty either way."""
        self.epoch += 1
        self._entries.clear()
        self.live = live

    def _drop_expired(self) -> None:
        now = self.clock()
        for api_key in [k for k, e in self._entries.items() if now - e.fetched_at >= self.ttl_s]:
            del self._entries[api_key]

    def __len__(self) -> int:
        return len(self._entries)

    def handle(self, routing_key: str, payload: dict) -> None:
        """One users event: drop what it makes stale."""
        if routing_key in KEY_EVENT_NAMES:
            self.evict(key_id=str(payload.get("key_id")))
        elif routing_key in USER_EVENT_NAMES:
            self.evict(user_id=str(payload.get("user_id")))


class KeyEvents:
    """This process's consumer of the events that make cached keys stale."""

    def __init__(self, amqp_uri: str, cache: KeyCache):
        self.amqp_uri = amqp_uri
        self.cache = cache
        self.queue_name = f"gateway.keycache.{uuid.uuid4().hex}"
        self.running = True
        self.handled = 0

    def start(self) -> None:
        eventlet.spawn_n(self.run)

    def stop(self) -> None:
        self.running = False

    def run(self) -> None:
        # Until it is back, every key is served from users (set_live(False)).
        keep_consuming(self._consume, lambda: self.running, lambda: self.cache.set_live(False),
                       RECONNECT_DELAY_S, "API-key cache event consumer")

    def _consume(self) -> None:
        with Connection(self.amqp_uri, heartbeat=10) as amqp:
            channel = amqp.channel()
            queue = Queue(self.queue_name, exclusive=True, auto_delete=True,
                          durable=False)(channel)
            queue.declare()
            users = Exchange(API_KEY_REVOKED.exchange, type="topic", durable=True)(channel)
            users.declare()
            for event in (*KEY_EVENTS, *USER_EVENTS):
                queue.bind_to(users, routing_key=event.name)
            with Consumer(channel, [queue], callbacks=[self._on_message], accept=["json"],
                          auto_declare=False, no_ack=True):
                self.cache.set_live(True)
                drain_while(amqp, lambda: self.running)

    def _on_message(self, body, message) -> None:
        try:
            if isinstance(body, (bytes, str)):
                body = json.loads(body)
            self.cache.handle(message.delivery_info["routing_key"], body)
        except Exception:
            # Cannot tell what went stale: drop everything.
            log.exception("API-key cache: unreadable event; emptying the cache")
            self.cache.set_live(self.cache.live)
        self.handled += 1
