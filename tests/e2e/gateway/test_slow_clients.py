"""A stalled or trickling client cannot hold a gateway connection (and one of
its 1,000 WSGI slots) for good: each phase of reading a request has a
deadline (gateway/slow_clients.py). Before, a request line followed by
nothing, headers sent a byte at a time, or a declared body never sent held
the connection until the client went away.

The gateway is a process of the test's own with deadlines of a second or two
(config/defaults.env's are 20-90 s), reached over raw sockets so the test
decides what is sent when. Each answer must arrive within a bound well over
the deadline (a socket timeout, so a gateway that never answers fails the
test instead of hanging it)."""
from __future__ import annotations

import json
import select
import socket
import time
import uuid

import pytest
import requests

from tests.e2e.browser.chromium import artifacts_dir
from tests.e2e.push import kit

pytestmark = pytest.mark.timeout(180)

DEADLINES = {"EXCHANGE_GATEWAY_REQUEST_LINE_TIMEOUT_S": "3",
             "EXCHANGE_GATEWAY_HEADERS_TIMEOUT_S": "1.5",
             "EXCHANGE_GATEWAY_BODY_TIMEOUT_S": "1.5",
             "EXCHANGE_GATEWAY_IDLE_TIMEOUT_S": "60"}
# Far over every deadline above: only a gateway that never answers meets it.
ANSWER_WITHIN_S = 20


@pytest.fixture(scope="module")
def gateway():
    channel = f"test-slow-clients-{uuid.uuid4().hex[:8]}"
    process = kit.GatewayProcess(kit.free_port(), channel,
                                 artifacts_dir("gateway") / f"{channel}.log", env=DEADLINES)
    yield process.wait_ready()
    process.stop()


def connect(gateway) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=ANSWER_WITHIN_S)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the gateway sends until it closes the connection; a socket
    timeout (the gateway neither answers nor closes) fails the test."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            pytest.fail(f"the gateway held the connection {ANSWER_WITHIN_S} s without closing "
                        f"it; received {received[:300]!r}")
        if not chunk:
            return received
        received += chunk


def refusal(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def assert_request_timeout(answer: bytes, phase: str, binance: bool = True) -> None:
    """A 408 with the refusal's JSON; ``binance``: Binance's ``{code, msg}``
    too (the server's own refusals carry both, the path not known yet)."""
    status, body = refusal(answer)
    assert status == 408, answer
    assert body["error"]["code"] == "REQUEST_TIMEOUT", body
    assert phase in body["error"]["message"], body
    if binance:
        assert body["code"] == -1000 and body["msg"].startswith("Request timeout"), body


def test_headers_that_never_end_get_a_408_and_the_connection_closed(gateway):
    with connect(gateway) as sock:
        sock.sendall(b"GET /api/v3/ping HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert_request_timeout(read_until_closed(sock), "headers")


def test_headers_sent_a_byte_at_a_time_get_a_408_however_steady(gateway):
    """A byte every 0.2 s, far inside the idle timeout: only a deadline for
    the headers as a whole ends it. The next byte goes only while the
    gateway has not answered (a byte sent after its close would reset the
    connection and lose the answer)."""
    with connect(gateway) as sock:
        sock.sendall(b"GET /api/v3/ping HTTP/1.1\r\n")
        for byte in b"X-Slow: " + b"a" * 250:   # 50 s at this pace
            if select.select([sock], [], [], 0.2)[0]:
                break
            sock.sendall(bytes([byte]))
        else:
            pytest.fail("the gateway read headers for 50 s without answering")
        assert_request_timeout(read_until_closed(sock), "headers")


def test_a_declared_body_never_sent_gets_a_408_and_the_connection_closed(gateway):
    body = b'{"market": "BTC-USDT"'
    with connect(gateway) as sock:
        sock.sendall(b"POST /api/v1/orders HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nAuthorization: Bearer x\r\n"
                     b"Content-Length: 200\r\n\r\n" + body)
        answer = read_until_closed(sock)
    assert_request_timeout(answer, "body", binance=False)   # the native API's shape
    assert b"connection: close" in answer.lower(), answer


def test_a_long_polling_post_whose_body_stalls_gets_a_408(gateway):
    """Engine.IO reads its POST bodies itself, outside Flask's error
    handling: the refusal is still the JSON 408, not a bare 500."""
    handshake = requests.get(f"{gateway.url}/socket.io/?EIO=4&transport=polling",
                             timeout=10).text
    sid = json.loads(handshake[handshake.index("{"):])["sid"]
    with connect(gateway) as sock:
        sock.sendall(f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                     f"Host: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                     f"Content-Length: 100\r\n\r\n40".encode())
        answer = read_until_closed(sock)
    status, body = refusal(answer)
    assert status == 408, answer
    assert body["code"] == "REQUEST_TIMEOUT" and "body" in body["message"], body   # Socket.IO's shape
    assert b"Traceback" not in gateway.log_path.read_bytes()


def test_a_request_line_that_never_ends_is_closed(gateway):
    with connect(gateway) as sock:
        sock.sendall(b"GET /api/v3/pi")
        assert read_until_closed(sock) == b""


def test_prompt_clients_are_served_on_a_kept_alive_connection(gateway):
    """The deadlines run per request: a keep-alive connection's second
    request, sent after a pause longer than the headers' and the body's
    deadlines, is served."""
    with requests.Session() as session:
        first = session.post(f"{gateway.url}/api/v3/order/test", timeout=10,
                             data={"symbol": "BTCUSDT"})
        time.sleep(2.0)
        second = session.get(f"{gateway.url}/api/v3/ping", timeout=10)
    assert first.status_code in (400, 401), first.text   # unsigned: refused, promptly
    assert second.status_code == 200 and second.json() == {}, second.text
