"""The request deadlines' settings and the body reader's deadline
(gateway/slow_clients.py), on green sockets, no servers. The gateway's own
answers to stalled clients: tests/e2e/gateway/test_slow_clients.py."""
from __future__ import annotations

import eventlet
import pytest
from eventlet.green import socket
from werkzeug.exceptions import RequestTimeout

from gateway.slow_clients import BodyTimeout, Deadlines, DeadlineInput
from services.common.config import load_settings

KEYS = ("EXCHANGE_GATEWAY_REQUEST_LINE_TIMEOUT_S", "EXCHANGE_GATEWAY_HEADERS_TIMEOUT_S",
        "EXCHANGE_GATEWAY_BODY_TIMEOUT_S", "EXCHANGE_GATEWAY_IDLE_TIMEOUT_S")


def test_the_defaults_leave_a_live_push_connection_alone():
    """A WebSocket hears from its live client at every Engine.IO ping: the
    idle timeout must be longer than the ping interval plus its timeout,
    or the gateway would cut live connections."""
    import engineio
    deadlines = Deadlines.from_settings(load_settings())
    server = engineio.Server()   # the gateway keeps Engine.IO's ping timing (gateway/sockets.py)
    assert deadlines.idle_s > server.ping_interval + server.ping_timeout
    # The whole request line's wait includes eventlet's idle keep-alive wait.
    from gateway.__main__ import KEEPALIVE_IDLE_S
    assert deadlines.request_line_s > KEEPALIVE_IDLE_S


@pytest.mark.parametrize("bad", ["", "0", "-1", "abc", "inf", "nan"])
def test_a_deadline_that_is_not_a_positive_number_of_seconds_is_refused_at_start(bad):
    settings = load_settings().with_overrides(EXCHANGE_GATEWAY_BODY_TIMEOUT_S=bad)
    with pytest.raises(ValueError, match="EXCHANGE_GATEWAY_BODY_TIMEOUT_S"):
        Deadlines.from_settings(settings)


def test_settings_are_read_as_seconds():
    settings = load_settings().with_overrides(**dict(zip(KEYS, ("3", "1.5", "2.5", "61"))))
    assert Deadlines.from_settings(settings) == Deadlines(3.0, 1.5, 2.5, 61.0)


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def trickle(sock, data: bytes, every_s: float):
    for byte in data:
        eventlet.sleep(every_s)
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return


def test_a_body_that_trickles_ends_at_the_deadline_however_steady(pair):
    """A byte every 50 ms never lets a socket timeout fire; the deadline
    still ends the read (the whole 200 bytes would take 10 s), and marks the
    connection to close."""
    server, client = pair
    expired = []
    body = DeadlineInput(server.makefile("rb"), body_s=0.3, on_expiry=lambda: expired.append(1))
    sender = eventlet.spawn(trickle, client, b"x" * 200, 0.05)
    with pytest.raises(BodyTimeout) as raised:
        body.read(200)
    sender.kill()
    assert isinstance(raised.value, RequestTimeout) and raised.value.code == 408
    assert "the body must arrive within 0.3 s" in raised.value.description
    assert expired == [1]


def test_a_body_in_time_is_read_whole(pair):
    server, client = pair
    body = DeadlineInput(server.makefile("rb"), body_s=5, on_expiry=pytest.fail)
    client.sendall(b"line one\nline two\n")
    client.shutdown(socket.SHUT_WR)
    assert body.readline() == b"line one\n"
    assert list(body) == [b"line two\n"]
    assert body.read() == b""


def test_the_deadline_counts_from_the_making_not_from_each_read(pair):
    server, client = pair
    body = DeadlineInput(server.makefile("rb"), body_s=0.2, on_expiry=lambda: None)
    eventlet.sleep(0.25)
    client.sendall(b"late")
    with pytest.raises(BodyTimeout):
        body.read(10)
