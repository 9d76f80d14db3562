"""Client IP behind trusted proxies, the signed payload as raw bytes, and
parameters sent empty (refused, never read as absent)."""
import ipaddress

import pytest
from flask import Flask

from gateway.api.binance import limit_param, param
from gateway.auth import READ, authenticate, resolve_client_ip, signed_payload
from gateway.errors import ApiError

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


def test_an_empty_recv_window_is_binances_1105_before_any_key_check():
    """Read as absent it would have been the default 5,000 ms (a client that
    meant another window would not know); no service is asked."""
    app = Flask(__name__)
    with app.test_request_context("/api/v3/account?recvWindow=&timestamp=1&signature=ab",
                                  headers={"X-MBX-APIKEY": "k" * 64}):
        with pytest.raises(ApiError) as caught:
            authenticate(READ)
    assert (caught.value.status, caught.value.binance_code, caught.value.binance_msg) == (
        400, -1105, "Parameter 'recvWindow' was empty.")


def test_an_empty_optional_parameter_is_1105_and_an_absent_one_its_default():
    app = Flask(__name__)
    with app.test_request_context("/api/v3/depth?symbol=BTCUSDT&limit="):
        with pytest.raises(ApiError) as caught:
            limit_param(100, 5000)
        assert caught.value.binance_code == -1105 and caught.value.field == "limit"
    with app.test_request_context("/api/v3/depth?symbol=BTCUSDT"):
        assert limit_param(100, 5000) == 100 and param("symbol", required=True) == "BTCUSDT"
    with app.test_request_context("/api/v3/depth?symbol=&limit=5"):
        with pytest.raises(ApiError) as caught:
            param("symbol", required=True)
        assert caught.value.binance_code == -1102


@pytest.mark.parametrize("window", ["abc", "1e4", "5000.5", "-1", "٥٠٠٠", "²", "1" * 21])
def test_a_recv_window_that_is_no_number_is_binances_1100_before_any_key_check(window):
    """Binance's -1131 "recvWindow must be less than 60000" names a window too
    large; a value that is no number of milliseconds is its -1100."""
    app = Flask(__name__)
    with app.test_request_context("/api/v3/account", query_string={
            "recvWindow": window, "timestamp": "1", "signature": "ab"},
            headers={"X-MBX-APIKEY": "k" * 64}):
        with pytest.raises(ApiError) as caught:
            authenticate(READ)
    assert (caught.value.status, caught.value.binance_code, caught.value.binance_msg) == (
        400, -1100, "Illegal characters found in parameter 'recvWindow'; legal range is "
                    "'^[0-9]{1,20}$'.")
