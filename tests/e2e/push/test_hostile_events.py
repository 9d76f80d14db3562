"""Hostile Socket.IO traffic from a client: every bad event or packet is
answered with an ``error`` event (or its acknowledgement) and the
connection goes on, as the protocol in gateway/sockets.py says; nothing
leaves a traceback in the gateway's log.

What did not hold before:

* python-socketio hands a client's *event* named ``connect`` or
  ``disconnect`` to the connect and disconnect handlers. ``disconnect``
  made the gateway forget the connection while it stayed open in its
  rooms (its later requests failed with a KeyError; its token's expiry no
  longer closed it, nor would a freeze); ``connect`` gave it a fresh record: no
  user (a later ``authenticate`` could switch it to another user) and no
  subscriptions counted (the limit of 20 was reset).
* An event with more than one argument, or ``depth_snapshot`` naming a
  market that is a list, raised a TypeError: no answer at all.
* A long-polling POST declaring a body over the frame limit was refused
  by Engine.IO, which then closed the session waiting for the client to
  read the close: the request was never answered and its green thread, its
  TCP connection and its WSGI slot (1,000 a process, shared with the REST
  APIs) were held for good; a few hundred such POSTs, headers only, would
  stop the gateway answering anyone.
* Packets that are not this protocol's (bad JSON, ``[]``, an event name
  that is not a string, nesting too deep, unknown packet types, binary
  frames) each left a traceback and no answer; a binary event declaring
  attachments made the gateway keep every later frame of the connection
  (up to 10^10 of 64 KB) as its attachments, and take its text frames too.

The gateway is a process of the test's own, so that its log is the test's.
"""
from __future__ import annotations

import json
import socket
import time
import uuid

import pytest
import requests

from gateway.sockets import MAX_FRAME_BYTES, MAX_SUBSCRIPTIONS
from services.common.config import load_settings
from tests.e2e.browser.chromium import artifacts_dir
from tests.e2e.push import kit
from tests.e2e.push.test_private_streams import SHORT_LIFESPAN_S, short_lived_client  # noqa: F401

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def settings():
    return load_settings()


@pytest.fixture(scope="module")
def gateway():
    channel = f"test-hostile-{uuid.uuid4().hex[:8]}"
    process = kit.GatewayProcess(kit.free_port(), channel,
                                 artifacts_dir("push") / f"{channel}.log")
    yield process.wait_ready()
    process.stop()


@pytest.fixture
def client(gateway):
    listener = kit.Listener(gateway.url).connect()
    yield listener
    listener.close()


def tracebacks(gateway) -> int:
    return gateway.log_path.read_text(errors="replace").count("Traceback")


def errors(listener) -> list[str]:
    return [data["code"] for data in listener.of("error")]


def wait_error(listener, code: str, timeout: float = 5.0):
    return listener.wait_for(lambda event, data: event == "error" and data["code"] == code,
                             timeout)


ROOMS = [{"channel": "candles", "market": market, "interval": interval}
         for market in ("BTC-USDT", "ETH-USDT")
         for interval in ("1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w")] + \
        [{"channel": channel, "market": market} for channel in ("trades", "ticker", "depth")
         for market in ("BTC-USDT", "ETH-USDT")]


def test_a_disconnect_event_from_the_client_does_not_make_the_gateway_forget_it(gateway,
                                                                                 client):
    before = tracebacks(gateway)
    assert client.call("subscribe", {"channel": "tickers"})["ok"]
    client.client.emit("disconnect", {})
    # still known: its requests are answered
    assert client.call("subscribe", {"channel": "trades", "market": "BTC-USDT"}, timeout=5)["ok"]
    assert wait_error(client, "RESERVED_EVENT")
    assert client.client.connected
    assert tracebacks(gateway) == before


def test_a_connection_that_sent_a_disconnect_event_is_still_closed_when_its_token_expires(
        settings, gateway, short_lived_client):
    trader = kit.new_trader(settings, prefix="pushhostile")
    listener = kit.Listener(gateway.url, short_lived_client(trader.username)).connect()
    try:
        assert listener.wait_for(lambda event, data: event == "welcome")
        listener.client.emit("disconnect", {})
        assert wait_error(listener, "TOKEN_EXPIRED", timeout=SHORT_LIFESPAN_S + 15), \
            listener.received
        assert wait_error(listener, "RESERVED_EVENT")
        assert listener.closed_by_the_gateway()
    finally:
        listener.close()


def test_a_connect_event_from_the_client_resets_neither_its_limits_nor_its_user(settings,
                                                                               gateway, client):
    assert len(ROOMS) > MAX_SUBSCRIPTIONS
    assert all(client.call("subscribe", room)["ok"] for room in ROOMS[:MAX_SUBSCRIPTIONS])
    client.client.emit("connect", {})
    assert client.call("subscribe", ROOMS[MAX_SUBSCRIPTIONS]).get("code") == \
        "TOO_MANY_SUBSCRIPTIONS"
    assert wait_error(client, "RESERVED_EVENT")

    one, other = (kit.new_trader(settings, prefix="pushhostile") for _ in range(2))
    signed_in = kit.Listener(gateway.url, kit.access_token(settings, one.username)).connect()
    try:
        signed_in.client.emit("connect", {})
        switched = signed_in.call("authenticate",
                                  {"token": kit.access_token(settings, other.username)})
        assert switched == {"ok": False, "code": "TOKEN_SUBJECT",
                            "message": "a connection cannot change user"}
        assert wait_error(signed_in, "RESERVED_EVENT")
    finally:
        signed_in.close()


def test_extra_arguments_and_unhashable_values_are_answered(gateway, client):
    before = tracebacks(gateway)
    # python-socketio sends a tuple as several arguments
    answer = client.call("subscribe", ({"channel": "tickers"}, {"and": "more"}))
    assert (answer["ok"], answer["code"]) == (False, "BAD_REQUEST")
    for market in (["BTC-USDT"], {"market": "BTC-USDT"}):
        answer = client.call("depth_snapshot", {"market": market})
        assert (answer["ok"], answer["code"]) == (False, "UNKNOWN_MARKET")
    assert errors(client) == ["BAD_REQUEST", "UNKNOWN_MARKET", "UNKNOWN_MARKET"]
    assert tracebacks(gateway) == before


class Raw(kit.RawSocketIO):
    def next_frames(self, until, timeout: float = 5.0) -> list[str]:
        """Frames read (pings answered) until one matches ``until``; [] if the
        connection ends or none does within ``timeout``."""
        self.sock.settimeout(timeout)
        read, deadline = [], time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                frame = self.frame()
                if frame is None:
                    return []
                if frame == "2":
                    self.send("3")
                    continue
                read.append(frame)
                if until(frame):
                    return read
        except (socket.timeout, OSError):
            pass
        return []

    def answers(self, ack_id: int) -> bool:
        """A subscribe with an acknowledgement id is acknowledged."""
        self.send(f'42{ack_id}["subscribe",{{"channel":"tickers"}}]')
        return bool(self.next_frames(lambda frame: frame.startswith(f"43{ack_id}[")))


def error_frame(frame: str) -> dict | None:
    if frame.startswith('42["error"'):
        return json.loads(frame[2:])[1]
    return None


BAD_PACKETS = {
    "not JSON": '42["subscribe",',
    "no event name": "42[]",
    "an event name that is a list": '42[["subscribe"],{"channel":"tickers"}]',
    "an event name that is an object": '42[{"a":1}]',
    "an object, not an array": '42{"a":1}',
    "no data at all": "4",
    "nested too deeply": '42["subscribe",' + "[" * 20000 + "]" * 20000 + "]",
    "an unknown packet type": "49",
    "an acknowledgement that is not JSON": "43xyz",
    "a connect error": '44{"message":"x"}',
}


@pytest.mark.parametrize("packet", BAD_PACKETS.values(), ids=BAD_PACKETS.keys())
def test_a_packet_of_no_event_gets_an_error_and_the_connection_goes_on(gateway, packet):
    refused_as_bad_packet(gateway, packet, 7)


def refused_as_bad_packet(gateway, packet: str, probe: int) -> None:
    """``packet`` answered BAD_PACKET, the connection still answering
    (``raw.answers(probe)``), and no traceback in the gateway's log."""
    before = tracebacks(gateway)
    raw = Raw(gateway.url)
    try:
        assert raw.next_frames(lambda frame: "welcome" in frame)
        raw.send(packet)
        read = raw.next_frames(lambda frame: error_frame(frame) is not None)
        assert read and error_frame(read[-1])["code"] == "BAD_PACKET", read
        assert raw.answers(probe)
    finally:
        raw.close()
    time.sleep(0.2)
    assert tracebacks(gateway) == before


def test_a_binary_event_is_refused_and_keeps_no_frame_of_the_connection(gateway):
    """This protocol has no binary events: one declaring an attachment is
    refused at once, so the next frame is an event again, not its attachment."""
    refused_as_bad_packet(gateway, '459999999999-["subscribe",{"_placeholder":true,"num":0}]', 8)


def test_an_oversized_long_polling_post_is_answered_at_once(gateway):
    before = tracebacks(gateway)
    polling = f"{gateway.url}/socket.io/?EIO=4&transport=polling"
    for declared in (MAX_FRAME_BYTES + 1, 10 ** 9):
        opened = requests.get(polling, timeout=10)
        sid = json.loads(opened.text[1:])["sid"]
        started = time.monotonic()
        # A body of this size is never sent: the declared length is refused
        # before a byte of it is read.
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as raw:
            raw.sendall(f"POST /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                        f"Host: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                        f"Content-Length: {declared}\r\n\r\n".encode())
            answer = raw.recv(4096)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert time.monotonic() - started < 5
    assert tracebacks(gateway) == before


@pytest.mark.parametrize("payload", ["2", "6", "9", "", "\x1e", "4x\x1e", "bAAAA",
                                     "\x1e".join(["3"] * 17), "d=2"])
def test_a_long_polling_payload_engine_io_would_refuse_is_answered_400(gateway, payload):
    """A ping, noop or unknown packet type made Engine.IO close the session
    and wait for the client to read the close: a POST of one byte was never
    answered and held its WSGI slot. An empty or unparsable packet (or 17 of
    them, past Engine.IO's 16) left a traceback and an "ok"."""
    before = tracebacks(gateway)
    polling = f"{gateway.url}/socket.io/?EIO=4&transport=polling"
    sid = json.loads(requests.get(polling, timeout=10).text[1:])["sid"]
    answer = requests.post(f"{polling}&sid={sid}", data=payload.encode(), timeout=10)
    if payload == "":
        assert answer.status_code == 200, answer.text   # no packets: nothing to refuse
    else:
        assert answer.status_code == 400, answer.text
        assert answer.json()["code"] == "BAD_PACKET", answer.text
    # The session still works: a message posted after it is taken.
    assert requests.post(f"{polling}&sid={sid}", data=b"40", timeout=10).status_code == 200
    assert tracebacks(gateway) == before
