"""Client IP behind trusted proxies, and the signed payload as raw bytes."""
import ipaddress

from flask import Flask

from gateway.auth import resolve_client_ip, signed_payload

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.5/32"))


def test_forwarded_for_is_ignored_from_an_untrusted_peer():
    assert resolve_client_ip("127.0.0.1", "203.0.113.7", PROXIES) == "127.0.0.1"
    assert resolve_client_ip("127.0.0.1", None, ()) == "127.0.0.1"


def test_forwarded_for_from_a_trusted_proxy_names_the_first_untrusted_hop():
    assert resolve_client_ip("127.0.0.5", "203.0.113.7", PROXIES) == "203.0.113.7"
    # a client cannot spoof by prepending: the right-most untrusted hop wins
    assert resolve_client_ip("127.0.0.5", "198.51.100.1, 203.0.113.7, 10.1.2.3",
                             PROXIES) == "203.0.113.7"
    assert resolve_client_ip("127.0.0.5", "garbage", PROXIES) == "127.0.0.5"
    assert resolve_client_ip("::ffff:127.0.0.5", "203.0.113.7", PROXIES) == "203.0.113.7"


def test_payload_is_the_raw_query_then_the_raw_body_without_the_signature():
    app = Flask(__name__)
    with app.test_request_context(
            "/api/v3/order?symbol=BTCUSDT&timestamp=1&signature=ab", method="POST",
            data=b"side=BUY&price=1%2E0&signature=cd&quantity=0.1",
            content_type="application/x-www-form-urlencoded"):
        assert signed_payload() == "symbol=BTCUSDT&timestamp=1side=BUY&price=1%2E0&quantity=0.1"
        from flask import request
        assert request.form["side"] == "BUY"     # the body was cached, not consumed


def test_a_json_body_is_signed_whole():
    app = Flask(__name__)
    body = b'{"market":"BTC-USDT","note":"a&signature=b"}'
    with app.test_request_context("/api/v1/orders?timestamp=1&signature=ab", method="POST",
                                  data=body, content_type="application/json"):
        assert signed_payload() == "timestamp=1" + body.decode()
