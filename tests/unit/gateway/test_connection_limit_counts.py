"""The per-address limits' pure parts and the pool's accounting
(gateway/connection_limits.py), on green sockets, no servers. The gateway's
own answers: tests/e2e/gateway/test_connection_limits.py."""
from __future__ import annotations

import ipaddress

import eventlet
import pytest
from eventlet.green import socket

from gateway.app import MAX_CONCURRENT_REQUESTS
from gateway.connection_limits import (
    FILES_BESIDES_CONNECTIONS, FILES_PER_CONNECTION, Admission, ConnectionLimits,
    OpenConnections, connection_room, proxy_peer, refuse, socket_attempt,
)
from gateway.errors import too_many_connections_response
from services.common.config import REPO_ROOT, load_settings

PROXIES = (ipaddress.ip_network("10.0.0.0/24"),)


def test_an_address_holds_at_most_its_cap_and_gets_its_slots_back():
    opened = OpenConnections(2)
    assert opened.take("127.0.0.2") and opened.take("127.0.0.2")
    assert not opened.take("127.0.0.2")                   # at the cap: nothing counted
    assert opened.take("127.0.0.3")                       # another address is its own
    opened.give_back("127.0.0.2")
    assert opened.held("127.0.0.2") == 1 and opened.take("127.0.0.2")
    for _ in range(2):
        opened.give_back("127.0.0.2")
    opened.give_back("127.0.0.3")
    assert opened.addresses() == 0                        # nothing kept for gone addresses


def test_a_cap_of_zero_is_no_cap():
    opened = OpenConnections(0)
    assert all(opened.take("127.0.0.2") for _ in range(5000))


def test_the_defaults_let_one_machine_hold_a_thousand_push_connections_but_not_a_process():
    """A box must hold 1,000 subscribed connections, and a load test or the
    clients behind one NAT come from one address: at 100 open and 300
    attempts per 5 minutes (the first defaults) the 101st was refused."""
    limits = ConnectionLimits.from_settings(load_settings())
    assert limits == ConnectionLimits(per_address=2000, attempts=3000, attempts_window_s=300)
    assert limits.per_address >= 1000 + 100 and limits.attempts >= 2 * 1000
    assert limits.per_address <= MAX_CONCURRENT_REQUESTS // 2    # the others keep the rest


def test_the_open_files_limit_is_raised_for_the_connections_or_they_are_fewer():
    wanted = 5000
    needed = FILES_BESIDES_CONNECTIONS + FILES_PER_CONNECTION * wanted
    assert connection_room(wanted, 1024, 524288) == (needed, wanted)     # raised as needed
    assert connection_room(wanted, 1024, -1) == (needed, wanted)         # hard: unlimited
    assert connection_room(wanted, 20000, 20000) == (20000, wanted)      # enough: left alone
    assert connection_room(wanted, -1, -1) == (-1, wanted)
    limit, connections = connection_room(wanted, 1024, 4096)             # a low hard limit
    assert limit == 4096
    assert connections == (4096 - FILES_BESIDES_CONNECTIONS) // FILES_PER_CONNECTION < wanted
    assert connection_room(wanted, 100, 100)[1] == 1                     # never none


@pytest.mark.parametrize("key, value", [
    ("EXCHANGE_GATEWAY_CONNECTIONS_PER_ADDRESS", "-1"),
    ("EXCHANGE_GATEWAY_CONNECTIONS_PER_ADDRESS", "many"),
    ("EXCHANGE_GATEWAY_SOCKET_ATTEMPTS", ""),
    ("EXCHANGE_GATEWAY_SOCKET_ATTEMPTS_WINDOW_S", "0"),
])
def test_a_setting_that_is_no_count_stops_the_gateway_at_start(key, value):
    with pytest.raises(ValueError, match=key):
        ConnectionLimits.from_settings(load_settings().with_overrides(**{key: value}))


def test_only_a_trusted_proxy_is_a_proxy_and_its_requests_count_for_the_forwarded_address():
    assert proxy_peer("10.0.0.7", PROXIES) and proxy_peer("::ffff:10.0.0.7", PROXIES)
    assert not proxy_peer("10.0.1.7", PROXIES) and not proxy_peer("192.0.2.1", PROXIES)
    assert not proxy_peer("10.0.0.7", ())
    admission = Admission(3, PROXIES, 10)
    assert admission.of_connection(("10.0.0.7", 5000)) is None       # the proxy's: per request
    assert admission.of_connection(("::ffff:127.0.0.9", 5000, 0, 0)) == "127.0.0.9"
    assert admission.of_request(("10.0.0.7", 5000), "1.2.3.4, 10.0.0.8") == "1.2.3.4"
    assert admission.of_request(("127.0.0.9", 5000), "1.2.3.4") is None  # counted per connection
    assert Admission(0, PROXIES, 10).of_connection(("127.0.0.9", 5000)) is None


@pytest.mark.parametrize("method, path, query, attempt", [
    ("GET", "/socket.io/", "EIO=4&transport=polling", True),
    ("GET", "/socket.io/", "EIO=4&transport=websocket", True),
    ("GET", "/socket.io/", "EIO=4&transport=polling&sid=", True),          # no session
    ("GET", "/socket.io/", "EIO=4&transport=polling&xsid=abc", True),
    ("GET", "/socket.io/", "EIO=4&transport=websocket&sid=abc", False),    # a session's upgrade
    ("GET", "/socket.io/", "EIO=4&transport=polling&sid=abc&t=1", False),  # its next poll
    ("POST", "/socket.io/", "EIO=4&transport=polling&sid=abc", False),
    ("GET", "/api/v3/ping", "", False),
])
def test_a_connection_attempt_is_a_handshake(method, path, query, attempt):
    assert socket_attempt({"REQUEST_METHOD": method, "PATH_INFO": path,
                           "QUERY_STRING": query}) is attempt


def test_the_refusals_codes_are_in_docs_errors_md():
    text = (REPO_ROOT / "docs" / "errors.md").read_text()
    assert "`TOO_MANY_CONNECTIONS`" in text and "`TOO_MANY_CONNECTION_ATTEMPTS`" in text


# ------------------------------------------------------------------ the pool, on green sockets

def connected_pair():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    server, addr = listener.accept()
    listener.close()
    return client, server, addr


@pytest.mark.parametrize("ending", ["returns", "raises", "killed"])
def test_a_connection_gives_its_slot_back_however_its_green_thread_ends(ending):
    admission = Admission(1, (), 10)
    client, server, addr = connected_pair()

    def serve(conn_state):
        if ending == "raises":
            raise ConnectionResetError("the client reset it")
        if ending == "killed":
            eventlet.sleep(60)

    thread = admission.pool.spawn(serve, [addr, server, None])
    assert admission.open.held("127.0.0.1") == 1
    if ending == "killed":
        eventlet.sleep(0)
        thread.kill()
    else:
        with pytest.raises(ConnectionResetError) if ending == "raises" else _nothing():
            thread.wait()
    assert admission.open.held("127.0.0.1") == 0
    client.close()
    server.close()


def test_a_connection_over_the_cap_never_runs_in_the_servers_pool():
    admission = Admission(1, (), 10)
    served = []
    first = connected_pair()
    admission.pool.spawn(lambda state: eventlet.sleep(5), [first[2], first[1], None])
    client, server, addr = connected_pair()
    thread = admission.pool.spawn(served.append, [addr, server, None])
    client.sendall(b"GET /api/v3/ping HTTP/1.1\r\nHost: x\r\n\r\n")
    thread.wait()
    assert served == [] and admission.pool.running() == 1
    assert client.recv(65536).startswith(b"HTTP/1.0 429 ")
    assert admission.open.held("127.0.0.1") == 1              # the refused one took nothing


def test_a_refusal_reads_the_request_then_answers_and_ends_within_its_bound():
    client, server, _ = connected_pair()
    answer = too_many_connections_response(1)
    client.sendall(b"POST /api/v1/orders HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello")
    refuse(server, answer, within_s=2.0)
    received = b""
    while chunk := client.recv(65536):
        received += chunk
    assert received == answer

    silent, server, _ = connected_pair()                      # sends nothing, never closes
    started = eventlet.hubs.get_hub().clock()
    refuse(server, answer, within_s=0.3)
    assert eventlet.hubs.get_hub().clock() - started < 1.0
    assert silent.recv(65536) == answer                       # answered all the same


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


def test_limits_count_an_ipv6_client_by_its_64_and_an_ipv4_one_by_its_address():
    from gateway.auth import limits_address
    assert limits_address("2001:db8:1:2:aaaa:bbbb:cccc:dddd") == "2001:db8:1:2::/64"
    assert limits_address("2001:DB8:1:2::1") == limits_address("2001:db8:1:2:ffff::1")
    assert limits_address("::ffff:10.1.2.3") == "10.1.2.3"         # IPv4-mapped: the IPv4 one
    assert limits_address("10.1.2.3") == "10.1.2.3"
    assert limits_address("::1") == "::/64"
    assert limits_address("not an address") == "not an address"
    admission = Admission(1, (), 10)
    first = admission.of_connection(("2001:db8:1:2::1", 5000, 0, 0))
    assert first == admission.of_connection(("2001:db8:1:2::99", 5001, 0, 0))
    assert admission.open.take(first) and not admission.open.take(first)   # one client's cap
