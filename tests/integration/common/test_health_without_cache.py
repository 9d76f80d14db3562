"""`/health` while only the cache is unreachable (issue 11: the gateway
answered 503, "the whole exchange down", though reads keep working from
Cassandra). Memcached only speeds reads up: its loss is ``degraded`` with 200.

The gateway is built in this process against `make up`'s stack with
Memcached's port pointing where nothing listens, so the shared Memcached keeps
serving the other tests (tests/e2e/test_health.py kills the real one)."""
import socket

from gateway.app import create_app


def port_nobody_listens_on() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]   # closed again on leaving: nothing listens


def test_health_is_degraded_not_down_when_only_the_cache_is_unreachable(settings):
    # No push bridge: it would join the stack's private push queue from this
    # process for the rest of the run, and, were it ever the active one, take
    # fills off the order counts in a Memcached nobody reads.
    app = create_app(settings.with_overrides(EXCHANGE_MEMCACHED_PORT=str(port_nobody_listens_on()),
                                             EXCHANGE_PUSH_BRIDGE="0"))
    response = app.test_client().get("/health")
    components = {c["name"]: c for c in response.get_json()["components"]}
    assert not components["memcached"]["up"], components["memcached"]
    assert (response.status_code, response.get_json()["status"]) == (200, "degraded"), \
        components
