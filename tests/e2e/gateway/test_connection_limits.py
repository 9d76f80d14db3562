"""One client address cannot exhaust a gateway process's connections, nor
open live push connections without end (gateway/connection_limits.py).
Before, nothing capped one address's open connections (a process serves
1,000; a WebSocket holds one for its life) and Socket.IO handshakes were
not limited at all: about 1,000 WebSockets from one machine shut a gateway
for everyone on one box.

The gateways are processes of the test's own with small limits (3 open
connections per address, 4 Socket.IO attempts per hour), reached over raw
sockets from loopback addresses of the test's own (127.0.0.0/8 is all
loopback: each is a client of its own), so the test decides what each
connection sends when. Every read has a socket timeout well over what
the gateway may take: a gateway that never answers fails the test."""
from __future__ import annotations

import json
import socket
import struct
import time
import uuid

import pytest

from tests.e2e.browser.chromium import artifacts_dir
from tests.e2e.loopback import own_address
from tests.e2e.push import kit

pytestmark = pytest.mark.timeout(180)

PER_ADDRESS = 3
ATTEMPTS = 4
LIMITS = {"EXCHANGE_GATEWAY_CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS),
          "EXCHANGE_GATEWAY_SOCKET_ATTEMPTS": str(ATTEMPTS),
          # An hour: a test's attempts (a second or two) never straddle windows.
          "EXCHANGE_GATEWAY_SOCKET_ATTEMPTS_WINDOW_S": "3600",
          "EXCHANGE_GATEWAY_WEIGHT_PER_MINUTE": "100000"}
ANSWER_WITHIN_S = 20


def start(name: str, env: dict) -> kit.GatewayProcess:
    channel = f"test-{name}-{uuid.uuid4().hex[:8]}"
    process = kit.GatewayProcess(kit.free_port(), channel,
                                 artifacts_dir("gateway") / f"{channel}.log", env=env)
    return process.wait_ready()


@pytest.fixture(scope="module")
def gateway():
    process = start("connection-limits", LIMITS)
    yield process
    process.stop()


def connect(gateway, address: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((address, 0))
    sock.settimeout(ANSWER_WITHIN_S)
    sock.connect(("127.0.0.1", gateway.port))
    return sock


def ask(sock: socket.socket, path: str, headers: str = "", method: str = "GET",
        body: bytes = b"") -> tuple[int, dict, bytes]:
    """Send a request and read its answer (its head, and its body by its length)."""
    if body:
        headers += f"Content-Length: {len(body)}\r\n"
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: gateway\r\n{headers}\r\n".encode()
                 + body)
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed without an answer; received {received[:300]!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":")
                                                         for line in lines[1:])}
    length = int(fields.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of the answer"
        body += chunk
    return int(lines[0].split(" ", 2)[1]), fields, body


def closed_by_the_gateway(sock: socket.socket) -> bool:
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


def assert_refused_for_connections(status: int, body: bytes) -> None:
    assert status == 429, body
    answer = json.loads(body)
    assert answer["code"] == -1003 and f"at most {PER_ADDRESS} open" in answer["msg"], answer
    assert answer["error"]["code"] == "TOO_MANY_CONNECTIONS", answer


def websocket_upgrade() -> str:
    return ("Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")


def held_until_gone(gateway, address: str, count: int, timeout: float = 10.0) -> None:
    """Wait until ``address`` may open ``count`` connections again: the
    gateway noticed the ends of the ones the test closed."""
    deadline = time.monotonic() + timeout
    while True:
        probes = [connect(gateway, address) for _ in range(count)]
        statuses = [ask(probe, "/api/v3/ping", "Connection: close\r\n")[0] for probe in probes]
        for probe in probes:
            probe.close()
        if statuses == [200] * count:
            return
        assert time.monotonic() < deadline, f"slots not given back: {statuses}"
        time.sleep(0.25)


def test_the_connection_over_an_addresss_cap_is_refused_with_json_while_another_is_served(
        gateway):
    greedy, other = own_address(), own_address()
    held = [connect(gateway, greedy) for _ in range(PER_ADDRESS)]   # idle: they count too
    try:
        assert ask(held[0], "/api/v3/ping")[0] == 200
        for path in ("/api/v3/ping", "/api/v1/time"):               # Binance's shape, the native
            over = connect(gateway, greedy)
            status, _, body = ask(over, path)
            assert_refused_for_connections(status, body)
            assert closed_by_the_gateway(over)
        # A live push connection is one too: refused before its upgrade.
        over = connect(gateway, greedy)
        status, _, body = ask(over, "/socket.io/?EIO=4&transport=websocket", websocket_upgrade())
        assert_refused_for_connections(status, body)
        served = connect(gateway, other)
        assert ask(served, "/api/v3/ping", "Connection: close\r\n")[0] == 200
        served.close()
    finally:
        for sock in held:
            sock.close()


def test_a_connection_that_ends_gives_its_slot_back_however_it_ends(gateway):
    client = own_address()
    closed = connect(gateway, client)
    assert ask(closed, "/api/v3/ping")[0] == 200
    reset = connect(gateway, client)                               # idle, then reset
    reset_mid_request = connect(gateway, client)
    reset_mid_request.sendall(b"GET /api/v3/ping HTTP/1.1\r\nHost: gateway\r\n")  # no end
    time.sleep(0.3)
    closed.close()
    for sock in (reset, reset_mid_request):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()                                              # RST, not FIN
    # A connection the gateway itself ends (a request it cannot parse) gives
    # its slot back too.
    refused = connect(gateway, client)
    refused.sendall(b"NOT HTTP\r\n\r\n")
    assert closed_by_the_gateway(refused)
    refused.close()
    held_until_gone(gateway, client, PER_ADDRESS)
    time.sleep(0.3)   # the probes' own ends, noticed
    held = [connect(gateway, client) for _ in range(PER_ADDRESS)]
    try:
        over = connect(gateway, client)
        status, _, body = ask(over, "/api/v3/ping")
        assert_refused_for_connections(status, body)              # the count is exact again
    finally:
        for sock in held:
            sock.close()


def test_socket_io_attempts_over_the_limit_are_refused_before_the_handshake(gateway):
    client, other = own_address(), own_address()
    sessions = []
    for _ in range(ATTEMPTS):
        sock = connect(gateway, client)
        status, _, body = ask(sock, "/socket.io/?EIO=4&transport=polling",
                              "Connection: close\r\n")
        assert status == 200, body
        sessions.append(json.loads(body[body.index(b"{"):])["sid"])
        sock.close()
    for handshake, headers in (("/socket.io/?EIO=4&transport=polling", ""),
                               ("/socket.io/?EIO=4&transport=websocket", websocket_upgrade())):
        sock = connect(gateway, client)
        status, fields, body = ask(sock, handshake, headers)
        sock.close()
        assert status == 429, body
        answer = json.loads(body)
        assert answer["error"]["code"] == "TOO_MANY_CONNECTION_ATTEMPTS", answer
        assert answer["code"] == -1003 and f"at most {ATTEMPTS} per 3600 s" in answer["msg"]
        assert 0 < int(fields["retry-after"]) <= 3600, fields
    # A session already open goes on (its requests are no attempts: here
    # its Socket.IO connect), and another address connects.
    sock = connect(gateway, client)
    status, _, body = ask(sock, f"/socket.io/?EIO=4&transport=polling&sid={sessions[0]}",
                          "Connection: close\r\n", method="POST", body=b"40")
    sock.close()
    assert (status, body) == (200, b"OK"), body
    sock = connect(gateway, other)
    assert ask(sock, "/socket.io/?EIO=4&transport=polling", "Connection: close\r\n")[0] == 200
    sock.close()


def test_behind_a_trusted_proxy_the_forwarded_address_is_capped_not_the_proxy():
    """The proxy's connections carry every client: never capped as the
    proxy's. A request counts for the address it forwards while it runs (a
    WebSocket's for the connection's life)."""
    proxy = own_address()
    gateway = start("connection-limits-proxy",
                    {**LIMITS, "EXCHANGE_GATEWAY_TRUSTED_PROXIES": f"{proxy}/32",
                     "EXCHANGE_GATEWAY_SOCKET_ATTEMPTS": "0"})
    greedy, other = own_address(), own_address()
    held = []
    try:
        idle = [connect(gateway, proxy) for _ in range(2 * PER_ADDRESS)]   # the proxy's own
        held.extend(idle)
        for _ in range(PER_ADDRESS):
            sock = connect(gateway, proxy)
            held.append(sock)
            status, _, _ = ask(sock, "/socket.io/?EIO=4&transport=websocket",
                               websocket_upgrade() + f"X-Forwarded-For: {greedy}\r\n")
            assert status == 101
        over = connect(gateway, proxy)
        status, _, body = ask(over, "/api/v3/ping", f"X-Forwarded-For: {greedy}\r\n")
        assert_refused_for_connections(status, body)
        assert closed_by_the_gateway(over)
        served = connect(gateway, proxy)
        assert ask(served, "/api/v3/ping", f"X-Forwarded-For: {other}\r\n")[0] == 200
        # A request that ended gives its count back: the proxy's connection
        # carries the greedy client's next request once a WebSocket closed.
        held.pop().close()
        deadline = time.monotonic() + 10
        while ask(served, "/api/v3/ping", f"X-Forwarded-For: {greedy}\r\n")[0] != 200:
            assert time.monotonic() < deadline, "the closed WebSocket's count was not given back"
            served.close()
            time.sleep(0.25)
            served = connect(gateway, proxy)
        served.close()
    finally:
        for sock in held:
            sock.close()
        gateway.stop()


def open_files_for(count: int) -> None:
    """This process's open-files limit raised for ``count`` sockets (many
    systems start a process at 1,024 with a far higher hard limit)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = count + 256
    if 0 <= soft < needed:
        if 0 <= hard < needed:
            pytest.skip(f"this machine lets a process open {hard} files, fewer than {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def still_open(sock: socket.socket) -> bool:
    """Whether the gateway has not closed ``sock`` (what it sent is read)."""
    sock.setblocking(False)
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(ANSWER_WITHIN_S)
    return False


def test_with_the_defaults_one_address_holds_a_thousand_live_push_connections():
    """The 1,000 subscribed connections a box must hold may come from one
    machine (a load test, the clients behind one NAT address). With the
    first defaults (100 open per address, 300 attempts per 5 minutes) the
    101st WebSocket from one address was refused; a process then served
    1,000 connections in all, so one address could not hold 1,000 with
    anyone else connected."""
    held_wanted = 1000
    open_files_for(held_wanted + 50)
    gateway = start("connection-defaults", {})      # the product's defaults
    client, other = own_address(), own_address()
    others = [connect(gateway, other) for _ in range(20)]   # another client's, idle
    held = []
    try:
        for index in range(held_wanted):
            sock = connect(gateway, client)
            held.append(sock)
            status, _, body = ask(sock, "/socket.io/?EIO=4&transport=websocket",
                                  websocket_upgrade())
            assert status == 101, f"WebSocket {index + 1} from one address: {status} {body[:200]!r}"
        time.sleep(1.0)                               # a refusal or close would have come by now
        assert sum(still_open(sock) for sock in held) == held_wanted
        # The same address's next request is served, and so is another's.
        for address in (client, other):
            sock = connect(gateway, address)
            assert ask(sock, "/api/v3/ping", "Connection: close\r\n")[0] == 200
            sock.close()
        assert all(still_open(sock) for sock in others)
    finally:
        for sock in held + others:
            sock.close()
        gateway.stop()
