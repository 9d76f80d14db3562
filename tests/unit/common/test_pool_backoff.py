"""The services' PostgreSQL pools try to reconnect at least every
RECONNECT_DELAY_MAX_S after losing their server (a failover), instead of
psycopg_pool's doubling pauses (1, 2, 4, 8, 16, 32 s...)."""
import psycopg_pool.pool

from services.common import postgres


def test_the_pools_reconnection_pauses_stop_growing_at_the_cap():
    attempt = psycopg_pool.pool.AttemptWithBackoff(timeout=300)
    delays = []
    for step in range(10):
        attempt.update_delay(float(step))
        delays.append(attempt.delay)
    assert delays[0] < postgres.RECONNECT_DELAY_MAX_S
    assert max(delays) <= postgres.RECONNECT_DELAY_MAX_S
    # Still a backoff up to the cap, then steady at it.
    assert delays[-1] == postgres.RECONNECT_DELAY_MAX_S
