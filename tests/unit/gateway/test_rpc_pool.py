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
