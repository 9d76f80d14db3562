"""The gateway's RPC pool keeps a request's deadline even while it connects:
a broker that accepts the socket and never speaks AMQP (a node hung while
starting, a half-open connection) used to hold the request for amqp's own
timeouts, 12 s, whatever was left of its deadline, then answer with a bare
socket timeout."""
import socket

import pytest
from nameko.exceptions import RpcTimeout

from gateway.rpc import RpcPool, now_ms


@pytest.fixture
def silent_broker():
    """A TCP listener on loopback that accepts and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


def test_creating_a_proxy_gives_up_at_the_requests_deadline(silent_broker):
    pool = RpcPool({"AMQP_URI": f"amqp://guest:guest@127.0.0.1:{silent_broker}/",
                    "serializer": "json"}, size=2)
    # Before, amqp's own connect timeout ended it (socket.timeout, after 12 s).
    with pytest.raises(RpcTimeout):
        with pool.lease(now_ms() + 1000):
            pass
    assert pool._created == 0  # the half-started proxy is not counted as lent or idle


def test_a_proxy_that_could_not_start_leaves_no_socket_open(silent_broker):
    """Its half-open connection sits in a reference cycle: without a
    collection every failed lease kept a descriptor (the gateway collects
    rarely, gateway/collector.py)."""
    import gc
    import os

    import eventlet

    def open_sockets():
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
            except OSError:  # the listing's own descriptor, closed by now
                pass
        return count
    pool = RpcPool({"AMQP_URI": f"amqp://guest:guest@127.0.0.1:{silent_broker}/",
                    "serializer": "json"}, size=2)
    threshold = gc.get_threshold()
    gc.set_threshold(50_000)  # as the gateway runs
    try:
        before = open_sockets()
        for _ in range(5):
            with pytest.raises(RpcTimeout):
                with pool.lease(now_ms() + 300):
                    pass
        for _ in range(100):  # the stops run in the background: up to 10 s
            if open_sockets() <= before:
                break
            eventlet.sleep(0.1)
        assert open_sockets() <= before
    finally:
        gc.set_threshold(*threshold)
