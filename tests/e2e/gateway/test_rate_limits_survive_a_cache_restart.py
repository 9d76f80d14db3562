"""The rate limits count again soon after Memcached restarts.

After a restart every idle pooled connection of the gateway is dead, and each
failure used to drop only the connection it used, with a 5 s pause between
tries: with tens of idle connections the gateway served without limits for
minutes. The pool now drops all of them at the first failure.

The test fills the pool with idle connections (many requests at once from a
loopback address of its own), restarts Memcached, then waits, bounded, for
the weight header to count again."""
import time

import eventlet

from tests.e2e.loopback import own_address, session_from
from tests.e2e.memcached_kit import kill_memcached, start_memcached

CONCURRENT = 48
RECOVERY_BOUND_S = 30   # the pause after a failure is 5 s; dead connections are 48


def test_counters_come_back_after_memcached_restarts(settings):
    url = f"{settings.gateway_url}/api/v3/ping"
    source = own_address()
    statuses = list(eventlet.GreenPool(CONCURRENT).imap(
        lambda _: session_from(source).get(url, timeout=30).status_code, range(CONCURRENT)))
    assert set(statuses) == {200}
    kill_memcached(settings)
    start_memcached(settings)
    session = session_from(source)
    deadline = time.monotonic() + RECOVERY_BOUND_S
    used = 0
    while used == 0:
        assert time.monotonic() < deadline, "the rate-limit counters did not come back"
        response = session.get(url, timeout=15)
        assert response.status_code == 200
        used = int(response.headers.get("X-MBX-USED-WEIGHT-1M", "0"))
        time.sleep(0.5)
