"""Which long-polling POST bodies the gateway hands to Engine.IO
(gateway/sockets.py ``poll_payload_refusal``): what a client sends in a
payload, and nothing that makes Engine.IO hang or fail. The gateway's
answers: tests/e2e/push/test_hostile_events.py."""
from __future__ import annotations

import pytest
from engineio import payload as engineio_payload

from gateway.sockets import poll_payload_refusal


@pytest.mark.parametrize("body", [b"", b"40", b'42["subscribe",{"channel":"tickers"}]', b"3",
                                  b"1", b"5", b"40\x1e3", "4\x1e".join(["3"] * 16).encode(),
                                  b"d=40", '42["x","\u00e9"]'.encode()])
def test_what_a_client_sends_is_handed_on(body):
    assert poll_payload_refusal(body) is None
    # ... and Engine.IO parses it.
    engineio_payload.Payload(encoded_payload=body.decode())


@pytest.mark.parametrize("body, reason", [
    (b"2", "type '2'"), (b"6", "type '6'"), (b"9", "type '9'"), (b"x", "type 'x'"),
    (b"bAAAA", "type 'b'"), (b"\x1e", "an empty packet"), (b"40\x1e", "an empty packet"),
    (b"d=2", "type '2'"), (b"\xff", "UTF-8"),
    ("\x1e".join(["3"] * 17).encode(), "at most 16 packets")])
def test_what_engine_io_would_refuse_or_fail_on_is_refused(body, reason):
    assert reason in poll_payload_refusal(body)
