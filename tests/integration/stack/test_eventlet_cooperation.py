"""Every blocking client the services use must yield to eventlet's hub.

20 concurrent RPC calls go into one service whose handler waits on a server:
PostgreSQL (``pg_sleep(0.1)``), Cassandra (``count(*)`` over a ~2 MB
partition: Cassandra has no server-side sleep, and counting keeps the wait on
the server; returning the 2 MB made the client decode rows for most of each
call, so even cooperating calls barely overlapped on a busy 2-core machine)
and Keycloak over HTTP (a token request).
Each handler records when its wait started and ended; if the client
cooperates, the waits overlap (peak concurrency near 20); if it blocks the
hub, they queue one behind the other (peak concurrency 1). The control test
puts psycopg's C wait back and must see the queueing, which shows this test
can fail.
"""
import time
import uuid

import psycopg.waiting
import pytest
import requests
from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy

from services.common.cassandra import CassandraSession
from services.common.config import load_settings
from services.common.postgres import PostgresPool

CALLS = 20
# A blocking client queues the waits (peak 1, as the control test shows); a
# cooperating one overlaps them. A quarter of the calls at once separates the
# two with margin: the CI rehearsal of 2026-12-05 saw Cassandra's cooperating
# waits peak at 9 of 20 on a busy machine, under the half this asked before.
OVERLAP_AT_LEAST = CALLS // 4
ROWS, ROW_BYTES = 2000, 1024


class CooperationProbe:
    name = "stack_cooperation"
    db = PostgresPool()
    cassandra = CassandraSession()

    @rpc
    def pg_wait(self):
        started = time.monotonic()
        with self.db.transaction() as conn:
            conn.execute("SELECT pg_sleep(0.1)")
        return started, time.monotonic()

    @rpc
    def cassandra_wait(self):
        started = time.monotonic()
        count = self.cassandra.execute(
            "SELECT count(*) FROM cooperation_rows WHERE p = 1").one()[0]
        assert count == ROWS
        return started, time.monotonic()

    @rpc
    def keycloak_wait(self, username, password):
        settings = load_settings()
        started = time.monotonic()
        # A password grant: Keycloak spends ~100 ms hashing the password (PBKDF2),
        # a server-side wait long enough to show overlap, as pg_sleep does.
        response = requests.post(
            f"{settings.keycloak_issuer}/protocol/openid-connect/token",
            data={"grant_type": "password", "username": username, "password": password,
                  "client_id": settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_ID"],
                  "client_secret": settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_SECRET"]},
            timeout=60)
        response.raise_for_status()
        return started, time.monotonic()


def peak_concurrency(intervals):
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals],
                    key=lambda ev: (ev[0], ev[1]))
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


@pytest.fixture(scope="module")
def partition(test_settings):
    from services.common.cassandra import make_cluster
    cluster = make_cluster(test_settings)
    session = cluster.connect(test_settings["EXCHANGE_CASSANDRA_KEYSPACE"])
    session.execute("CREATE TABLE IF NOT EXISTS cooperation_rows "
                    "(p int, c int, payload blob, PRIMARY KEY (p, c))")
    insert = session.prepare("INSERT INTO cooperation_rows (p, c, payload) VALUES (1, ?, ?)")
    payload = b"x" * ROW_BYTES
    for start in range(0, ROWS, 200):
        futures = [session.execute_async(insert, (c, payload)) for c in range(start, start + 200)]
        for future in futures:
            future.result()
    cluster.shutdown()


@pytest.fixture
def probe_service(container_factory, nameko_config, partition):
    config = {**nameko_config, "max_workers": CALLS + 5, "POSTGRES_POOL_MAX": CALLS + 5}
    container = container_factory(CooperationProbe, config)
    container.start()
    return config


def call_concurrently(config, method, per_call_args=None):
    with ServiceRpcProxy("stack_cooperation", config, timeout=120) as proxy:
        # Untimed warm-up: the first round would also measure the connection
        # pools growing (new connections, authentication), not the hub.
        warm = [getattr(proxy, method).call_async(*(per_call_args[n] if per_call_args else ()))
                for n in range(CALLS)]
        for reply in warm:
            reply.result()
        started = time.monotonic()
        replies = [getattr(proxy, method).call_async(*(per_call_args[n] if per_call_args else ()))
                   for n in range(CALLS)]
        intervals = [tuple(reply.result()) for reply in replies]
        elapsed = time.monotonic() - started
    peak = peak_concurrency(intervals)
    print(f"{method}: {CALLS} calls in {elapsed * 1000:.0f} ms, peak concurrency {peak}")
    return peak


@pytest.fixture(scope="module")
def keycloak_users(settings):
    """One user per call: Keycloak refuses concurrent password grants of one user."""
    from services.common.identity import backend_admin
    admin = backend_admin(settings)
    users, password = [], "cooperation-password-1"
    for _ in range(CALLS):
        username = f"coop-{uuid.uuid4().hex[:8]}"
        user_id = admin.create_user({
            "username": username, "email": f"{username}@example.test", "enabled": True,
            "emailVerified": True, "firstName": "Co", "lastName": "Op",
            "credentials": [{"type": "password", "value": password, "temporary": False}]})
        users.append((username, password, user_id))
    yield users
    for *_, user_id in users:
        admin.delete_user(user_id)


@pytest.mark.parametrize("method", ["pg_wait", "cassandra_wait"])
def test_waits_on_servers_overlap(probe_service, method):
    assert call_concurrently(probe_service, method) >= OVERLAP_AT_LEAST


def test_waits_on_keycloak_overlap(probe_service, keycloak_users):
    logins = [(username, password) for username, password, _ in keycloak_users]
    assert call_concurrently(probe_service, "keycloak_wait", logins) >= OVERLAP_AT_LEAST


def test_control_psycopg_c_wait_blocks_the_hub(probe_service, monkeypatch):
    monkeypatch.setattr(psycopg.waiting, "wait", psycopg.waiting.wait_c)
    assert call_concurrently(probe_service, "pg_wait") == 1
