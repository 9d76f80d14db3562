"""The zones' edge HAProxy (roles/haproxy, ``frontend/backend gateways``)
with real connections: a real HAProxy of the test's own, on 127.0.0.1 free
ports, runs the edge configuration rendered by Ansible from the role
(tests/unit/ansible/haproxy_render.py), with some of the role's variables
made short or small so the test is quick. Behind it: a small local HTTP
server that records what reaches it, or, for the WebSocket, a gateway
process of this tree (on the running stack).

Before the edge had only ``timeout client 60s`` (inactivity): headers
trickled a byte every 50 s, or thousands of idle connections from one
address, held HAProxy's and the gateways' connection slots for as long as
the client liked. Every process a test starts is stopped at its end."""
from __future__ import annotations

import http.server
import json
import secrets
import socket
import subprocess
import threading
import time
import uuid

import pytest
import requests
import socketio

from tests.e2e.push import kit as push_kit
from tests.unit.ansible import haproxy_render

pytestmark = [pytest.mark.skipif(not haproxy_render.Path(haproxy_render.HAPROXY).exists(),
                                 reason="haproxy not installed"),
              pytest.mark.timeout(300)]

# An answer or a close well after every timeout below; only an edge that
# holds the connection meets it (then the test fails rather than hangs).
WAIT_S = 15
# How long the backend takes to answer a /slow... request.
SLOW_S = 3


class Backend:
    """A gateway stand-in: answers 200 to anything (the edge's check on
    /health/live included; /slow... after ``SLOW_S``), records the requests'
    paths and headers, and the most requests it served at once."""

    def __init__(self):
        self.requests: list[tuple[str, dict]] = []
        self.busy = self.most_busy = 0
        recorded = self.requests
        lock = threading.Lock()
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                recorded.append((self.path, self.headers))
                if self.path == "/health/live":     # the edge's check: outside maxconn
                    return self.answer()
                with lock:
                    backend.busy += 1
                    backend.most_busy = max(backend.most_busy, backend.busy)
                try:
                    if self.path.startswith("/slow"):
                        time.sleep(SLOW_S)
                    self.answer()
                finally:
                    with lock:
                        backend.busy -= 1

            def answer(self):
                body = b'{"ok":true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def seen(self, path: str) -> list:
        """The headers (email.message.Message) of each request for ``path``."""
        return [headers for seen_path, headers in self.requests if seen_path == path]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Edge:
    """HAProxy with the edge configuration, the role's defaults overridden by
    ``variables``, in front of one server at ``backend_port``."""

    def __init__(self, directory, backend_port: int, **variables):
        self.port = push_kit.free_port()
        inventory = directory / "inventory.yml"
        # The edge host and one gateway host, as in three-zones (hosts.yml).
        inventory.write_text(
            "all:\n  children:\n"
            "    edge:\n      hosts:\n        edge-lb:\n"
            "          ansible_connection: local\n          exchange_zone: edge\n"
            "          exchange_address: 127.0.0.1\n"
            "    gateway:\n      hosts:\n        gateway-a:\n          exchange_address: 127.0.0.1\n")
        self.config = haproxy_render.render(inventory, "edge-lb", directory,
                                            haproxy_gateway_port=self.port,
                                            haproxy_gateway_backend_port=backend_port,
                                            **variables)
        self.log = open(directory / "haproxy.log", "wb")
        self.process = subprocess.Popen([haproxy_render.HAPROXY, "-W", "-db", "-f", str(self.config)],
                                        stdout=self.log, stderr=self.log)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_serving(self, path: str = "/ready", timeout: float = 30) -> "Edge":
        """Until a request reaches the server through the edge (its check
        has it up). New connections: keep the test's rate limits in mind."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "haproxy exited: " + self.config.read_text()[-2000:]
            try:
                if requests.get(self.url + path, timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise AssertionError(f"nothing served through the edge on {self.port}")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)
        self.log.close()


@pytest.fixture
def backend():
    server = Backend()
    yield server
    server.stop()


@pytest.fixture
def edge_of(tmp_path):
    started = []

    def start(backend_port: int, **variables) -> Edge:
        edge = Edge(tmp_path, backend_port, **variables)
        started.append(edge)
        return edge

    yield start
    for edge in started:
        edge.stop()


def connect(edge: Edge, source: str | None = None) -> socket.socket:
    """From 127.0.0.1, or from ``source``, another loopback address: a
    client of another address."""
    return socket.create_connection(("127.0.0.1", edge.port), timeout=WAIT_S,
                                    source_address=(source, 0) if source else None)


def other_address() -> str:
    """A loopback address of its own for this run (Linux answers all of
    127/8), so no earlier run's counters apply to it."""
    return f"127.{secrets.randbelow(250) + 2}.{secrets.randbelow(250) + 1}.{secrets.randbelow(250) + 1}"


def refused_at_once(edge: Edge, path: str) -> bool:
    """The connection is closed without a byte of answer (the edge's
    ``tcp-request connection reject``: it may already show at connect)."""
    try:
        sock = connect(edge)
    except ConnectionResetError:
        return True
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n".encode())
    except (BrokenPipeError, ConnectionResetError):
        pass
    with sock:
        return until_closed(sock) == b""


def until_closed(sock: socket.socket) -> bytes:
    """What the edge sends until it closes; a reset counts as closed."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            pytest.fail(f"the edge held the connection {WAIT_S} s; received {received[:300]!r}")
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def get(sock: socket.socket, path: str) -> tuple[int, bytes]:
    """One keep-alive GET on ``sock``: its status and body."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n".encode())
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"closed in the body {body!r}"
        body += chunk
    return int(head.split(b" ", 2)[1]), body


def answer(raw: bytes) -> tuple[int, dict, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body), head


def test_headers_trickled_a_byte_a_second_are_cut_at_the_http_request_timeout(backend, edge_of):
    """A byte a second passes any inactivity timeout (before: timeout
    client 60s, restarted by every byte); the whole headers have 2 s."""
    edge = edge_of(backend.port, haproxy_edge_http_request_timeout="2s").wait_serving()
    sock = connect(edge)
    started = time.monotonic()
    sock.sendall(b"GET /trickled HTTP/1.1\r\nHost: edge\r\n")
    sock.settimeout(1)
    received = b""
    for byte in b"X-Slow: " + b"a" * (WAIT_S + 5):    # bounded: ends with the edge's answer
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            break
        received += chunk
        if not chunk or b"\r\n\r\n" in received:
            break
    sock.settimeout(WAIT_S)
    received += until_closed(sock)
    elapsed = time.monotonic() - started
    sock.close()
    assert received, f"closed without an answer after {elapsed:.1f} s"
    # HAProxy's own 408 (HTML: its HTTP/1 layer answers before any errorfile).
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert 1.5 <= elapsed <= 5, elapsed
    assert not backend.seen("/trickled")   # no gateway connection was ever used


def test_one_address_gets_so_many_open_connections_and_closing_one_frees_room(backend, edge_of):
    """All of the test's clients are 127.0.0.1: the limit is per address."""
    limit = 5
    edge = edge_of(backend.port, haproxy_edge_client_max_connections=limit,
                   haproxy_edge_http_keep_alive_timeout="60s").wait_serving()
    held = []
    try:
        for n in range(limit):
            sock = connect(edge)
            held.append(sock)
            assert get(sock, f"/held-{n}")[0] == 200
        # Over the limit: closed before anything is read or answered.
        assert refused_at_once(edge, "/over")
        assert not backend.seen("/over")
        # The ones held still work.
        assert get(held[0], "/still-held")[0] == 200
        # One closed: room for one more, and only one.
        held.pop().close()
        deadline = time.monotonic() + WAIT_S
        while True:     # the edge sees the close a moment later
            try:
                sock = connect(edge)
            except ConnectionResetError:
                sock = None
            try:
                status = get(sock, "/after-close")[0] if sock else None
            except (AssertionError, ConnectionResetError, BrokenPipeError):
                status = None
            if status is not None:
                held.append(sock)
                break
            if sock:
                sock.close()
            assert time.monotonic() < deadline, "no room after a connection closed"
            time.sleep(0.2)
        assert status == 200
        assert refused_at_once(edge, "/over-again")
        # Another address has its own limit: served while this one is full.
        with connect(edge, other_address()) as other:
            assert get(other, "/other-address")[0] == 200
    finally:
        for sock in held:
            sock.close()


def test_new_connections_over_the_rate_are_refused_with_429_minus_1003(backend, edge_of):
    rate = 8
    edge = edge_of(backend.port, haproxy_edge_client_max_connection_rate=rate,
                   haproxy_edge_client_rate_period_s=30)
    # wait_serving counts too: its connections are new connections.
    edge.wait_serving()
    statuses = []
    refused = None
    for n in range(rate + 2):   # bounded
        sock = connect(edge)
        sock.sendall(f"GET /rate-{n} HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n".encode())
        raw = until_closed(sock)
        sock.close()
        statuses.append(int(raw.split(b" ", 2)[1]))
        if statuses[-1] == 429:
            refused = raw
            break
    assert refused, statuses
    assert statuses[:-1] and set(statuses[:-1]) == {200}, statuses
    status, body, head = answer(refused)
    assert body["code"] == -1003 and body["msg"].startswith("Too many"), body
    assert b"\r\nretry-after: 30" in head.lower(), head
    assert not backend.seen(f"/rate-{len(statuses) - 1}")


def test_a_full_gateway_gets_no_more_requests_they_wait_in_the_queue(backend, edge_of):
    """maxconn 1: a second request waits while the first is served, then is
    answered; one waiting longer than the queue's timeout gets a JSON 503.
    The gateway never has more than maxconn at once (before: no maxconn,
    HAProxy sent it whatever came)."""
    edge = edge_of(backend.port, haproxy_edge_server_maxconn=1,
                   haproxy_edge_queue_timeout="5s").wait_serving()
    results = {}

    def fetch(name):
        started = time.monotonic()
        reply = requests.get(f"{edge.url}/{name}", timeout=WAIT_S)
        results[name] = (reply.status_code, time.monotonic() - started)

    first = threading.Thread(target=fetch, args=("slow-first",))
    first.start()
    time.sleep(0.5)
    fetch("queued")
    first.join(WAIT_S)
    assert results["slow-first"][0] == 200, results
    status, waited = results["queued"]
    assert status == 200 and waited >= SLOW_S - 1, results
    assert backend.most_busy == 1

    edge.stop()
    edge = edge_of(backend.port, haproxy_edge_server_maxconn=1,
                   haproxy_edge_queue_timeout="1s").wait_serving()
    first = threading.Thread(target=fetch, args=("slow-again",))
    first.start()
    time.sleep(0.5)
    started = time.monotonic()
    reply = requests.get(f"{edge.url}/too-long", timeout=WAIT_S)
    first.join(WAIT_S)
    assert reply.status_code == 503, reply.text
    assert reply.json()["error"]["code"] == "UNAVAILABLE", reply.text
    assert 0.5 <= time.monotonic() - started < SLOW_S, time.monotonic() - started
    assert not backend.seen("/too-long") and backend.most_busy == 1


def test_the_gateway_is_told_the_client_address_after_any_the_client_sent(backend, edge_of):
    edge = edge_of(backend.port).wait_serving()
    reply = requests.get(edge.url + "/forwarded", headers={"X-Forwarded-For": "203.0.113.9"},
                         timeout=WAIT_S)
    assert reply.status_code == 200
    (headers,) = backend.seen("/forwarded")
    # The client's own first, then the edge's: the gateway (eventlet joins
    # repeated headers with ",") believes the right-most, from the edge only.
    assert headers.get_all("X-Forwarded-For") == ["203.0.113.9", "127.0.0.1"], headers.items()


def test_behind_the_edge_a_gateways_per_address_limit_counts_each_client(edge_of):
    """A gateway of this tree that trusts the edge's address (as the
    three-zones inventory has the zones' gateways trust the edge) with a
    request weight of 5 a minute per address: a client over it is refused,
    a client of another address is not, and a header naming another address
    changes nothing. Before (no X-Forwarded-For from the edge, no trusted
    proxy) every client was the edge to the gateways: one client's excess,
    and its ban, were everyone's."""
    channel = f"test-edge-ip-{uuid.uuid4().hex[:8]}"
    from tests.e2e.browser.chromium import artifacts_dir
    gateway = push_kit.GatewayProcess(
        push_kit.free_port(), channel, artifacts_dir("gateway") / f"{channel}.log",
        env={"EXCHANGE_GATEWAY_TRUSTED_PROXIES": "127.0.0.1/32",
             "EXCHANGE_GATEWAY_WEIGHT_PER_MINUTE": "5"})
    try:
        gateway.wait_ready()
        edge = edge_of(gateway.port).wait_serving("/health/live")
        greedy, other = other_address(), other_address()
        statuses = []
        with connect(edge, greedy) as sock:
            for _ in range(8):      # bounded: 5 allowed, then refused
                statuses.append(get(sock, "/api/v3/ping")[0])
                if statuses[-1] == 429:
                    break
        assert statuses[-1] == 429 and set(statuses[:-1]) == {200}, statuses
        with connect(edge, other) as sock:
            assert get(sock, "/api/v3/ping")[0] == 200
        # The greedy client naming the other address is still itself.
        with connect(edge, greedy) as sock:
            sock.sendall(f"GET /api/v3/ping HTTP/1.1\r\nHost: edge\r\n"
                         f"X-Forwarded-For: {other}\r\nConnection: close\r\n\r\n".encode())
            assert until_closed(sock).startswith(b"HTTP/1.1 429 ")
    finally:
        gateway.stop()


@pytest.fixture
def gateway():
    channel = f"test-edge-{uuid.uuid4().hex[:8]}"
    from tests.e2e.browser.chromium import artifacts_dir
    process = push_kit.GatewayProcess(push_kit.free_port(), channel,
                                      artifacts_dir("gateway") / f"{channel}.log")
    yield process.wait_ready()
    process.stop()


def test_a_websocket_through_the_edge_outlives_the_request_and_keep_alive_timeouts(gateway, edge_of):
    """Socket.IO over a WebSocket (a gateway of this tree) through an edge
    whose http-request and keep-alive timeouts are 2 and 3 s and whose
    tunnel timeout is 30 s: 35 s later it is still up and answers, as
    Engine.IO's ping (every 25 s) keeps the tunnel busy."""
    edge = edge_of(gateway.port, haproxy_edge_http_request_timeout="2s",
                   haproxy_edge_http_keep_alive_timeout="3s",
                   haproxy_edge_tunnel_timeout="30s").wait_serving("/health/live")
    listener = push_kit.Listener(edge.url)
    disconnected = []
    listener.client.on("disconnect", lambda *reason: disconnected.append(time.monotonic()))
    listener.connect()
    # As a browser connects: long polling first (its POSTs' bodies buffered
    # by the edge), then the upgrade to a WebSocket.
    browser = socketio.Client(reconnection=False)
    try:
        assert listener.client.transport() == "websocket"
        connected_at = time.monotonic()
        browser.connect(edge.url, wait_timeout=10)
        assert browser.call("subscribe", {"channel": "tickers"}, timeout=10)["ok"]
        while time.monotonic() - connected_at < 35 and not disconnected:   # bounded
            time.sleep(0.5)
        assert not disconnected, f"cut after {disconnected[0] - connected_at:.1f} s"
        assert listener.client.connected
        assert listener.call("subscribe", {"channel": "tickers"})["ok"]
        assert browser.connected and browser.transport() == "websocket"
        assert browser.call("unsubscribe", {"channel": "tickers"}, timeout=10)["ok"]
    finally:
        listener.close()
        if browser.connected:
            browser.disconnect()
