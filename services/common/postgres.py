"""PostgreSQL access for services: one connection pool per service process,
eventlet-cooperative (see services.common.green), behind a Nameko provider.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import eventlet
import psycopg
from nameko.extensions import DependencyProvider
import psycopg_pool.pool
from psycopg_pool import ConnectionPool
from psycopg_pool.base import AttemptWithBackoff

from services.common import green
from services.common.config import Settings, load_settings

green.install()

# Seconds: the longest pause between a pool's attempts to reconnect.
RECONNECT_DELAY_MAX_S = 2.0


class CappedBackoff(AttemptWithBackoff):
    """psycopg_pool's reconnection backoff, doubling from 1 s but never past
    RECONNECT_DELAY_MAX_S. Uncapped, a pool that lost its connections in a
    failover tries again 1, 3, 7, 15, 31 s after: a leader back after 16 s
    (Patroni's ttl, HAProxy's checks) was reached only at 31 s, which made
    the three-zones drill's PostgreSQL-leader zone stop trading 35 s."""

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_DELAY_MAX_S)


# The pool takes no backoff setting: its module's name is the only way in.
psycopg_pool.pool.AttemptWithBackoff = CappedBackoff

T = TypeVar("T")

# PostgreSQL aborts one transaction of a deadlock or a serialization conflict;
# nothing of it was committed, so running it again is safe and usually succeeds.
TRANSIENT_ABORTS = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


# A refusal raised inside PostgreSQL by a declared function (wallets.move_funds,
# the withdrawal state machine, orders' place_orders_tx): SQLSTATE EX001, the
# refusal's error code in the HINT, the human text in the message
# (docs/errors.md). ``refusal_of`` is the one reader of that convention.
REFUSAL_SQLSTATE = "EX001"


def refusal_of(exc: BaseException) -> tuple[str, str] | None:
    """``(code, message)`` of a coded refusal PostgreSQL raised, else None."""
    if isinstance(exc, psycopg.Error) and exc.sqlstate == REFUSAL_SQLSTATE:
        return exc.diag.message_hint or "", exc.diag.message_primary or ""
    return None


def retry_transient(run: Callable[[], T], attempts: int = 5) -> T:
    """``run()``, run again (after a short, growing pause) when PostgreSQL
    aborted its transaction to break a deadlock or a serialization conflict."""
    for attempt in range(attempts):
        try:
            return run()
        except TRANSIENT_ABORTS:
            if attempt == attempts - 1:
                raise
            eventlet.sleep(0.002 * 2 ** attempt)
    raise AssertionError("unreachable")


@contextmanager
def autocommitted(pool: ConnectionPool) -> Iterator[psycopg.Connection]:
    """A pooled connection whose statements each commit on their own: one
    round trip where an explicit transaction costs three (BEGIN, the
    statement, COMMIT). The connection goes back to the pool as it was."""
    with pool.connection() as conn:
        conn.autocommit = True
        try:
            yield conn
        finally:
            if not conn.closed:
                conn.autocommit = False


def make_pool(settings: Settings, dbname: str | None = None, **overrides) -> ConnectionPool:
    kwargs = dict(min_size=settings.int("EXCHANGE_POSTGRES_POOL_MIN"),
                  max_size=settings.int("EXCHANGE_POSTGRES_POOL_MAX"),
                  timeout=10, open=True, name="exchange")
    kwargs.update(overrides)
    pool = ConnectionPool(settings.postgres_dsn(dbname), **kwargs)
    pool.wait(timeout=10)
    return pool


class Database:
    """What a worker gets: transactions on pooled connections."""

    def __init__(self, pool: ConnectionPool):
        self.pool = pool

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        """A connection inside one transaction: committed when the block ends,
        rolled back when it raises."""
        with self.pool.connection() as conn:
            with conn.transaction():
                yield conn


class PostgresPool(DependencyProvider):
    """Nameko provider: the pool lives as long as the service container.

    The database name comes from EXCHANGE_POSTGRES_DB unless the container
    config has POSTGRES_DB (tests point services at the test database).
    """

    def setup(self):
        settings = load_settings()
        config = self.container.config
        overrides = {}
        if "POSTGRES_POOL_MAX" in config:
            overrides["max_size"] = int(config["POSTGRES_POOL_MAX"])
        self.pool = make_pool(settings, config.get("POSTGRES_DB"), **overrides)

    def stop(self):
        self.pool.close()

    def kill(self):
        self.pool.close(timeout=0)

    def get_dependency(self, worker_ctx):
        return Database(self.pool)
