"""Small differences from Binance's answers, put right in session 12, against
the running gateway:

* ``GET /api/v3/allOrders`` with ``startTime`` after ``endTime``: Binance's
  -1023 "Start time is greater than end time." (as ``/klines``), where the
  gateway answered an empty list;
* a request line over the server's limit (eventlet's 8192 bytes): 414 with
  a JSON ``{code, msg}`` body like every other refusal, where the server
  answered a bare 414 with no body (a client's JSON decoding failed);
* (session 24) a parameter sent with no value: Binance's -1105 (-1102 when
  mandatory), where the gateway read an optional one as absent and answered
  with its default (``limit=``, ``recvWindow=``);
* (session 25) a signed ``timestamp`` or ``recvWindow`` of digits that are
  not ASCII: a superscript ("²", a digit to ``str.isdigit``, refused by
  ``int``) was a 500, now -1102 / -1100 like any malformed value; leading
  zeros ("05000"), signed as sent, were refused as a bad signature."""
import time

import pytest
import requests

from tests.e2e.gateway import binance_testkit as kit
from tests.e2e.gateway.binance_testkit import BINANCE


@pytest.fixture(scope="module")
def reader(settings):
    return kit.new_trader(settings, {}, prefix="gwsmall")


def test_all_orders_with_start_after_end_is_binances_1023(settings, reader):
    now = int(time.time() * 1000)
    response = kit.raw(settings, "GET", "/api/v3/allOrders", reader,
                       params={"symbol": BINANCE, "startTime": now, "endTime": now - 60_000})
    assert response.status_code == 400, response.text
    assert response.json() == {"code": -1023, "msg": "Start time is greater than end time."}
    same = kit.raw(settings, "GET", "/api/v3/allOrders", reader,
                   params={"symbol": BINANCE, "startTime": now, "endTime": now})
    assert (same.status_code, same.json()) == (200, [])


@pytest.mark.parametrize("path", ["/api/v3/klines", "/api/v1/orders"])
def test_a_url_over_the_limit_is_a_json_414(settings, path):
    response = requests.get(f"{settings.gateway_url}{path}?symbol={BINANCE}&pad={'a' * 9000}",
                            timeout=15)
    assert response.status_code == 414
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == -1100 and "too long" in body["msg"]       # Binance's shape
    assert body["error"]["code"] == "URI_TOO_LONG"                    # the native API's
    # Under the limit the route answers as before.
    assert requests.get(f"{settings.gateway_url}/api/v3/ping?pad={'a' * 8000}",
                        timeout=15).status_code == 200


@pytest.mark.parametrize("headers", [{"X-Padding": "a" * 9000},
                                     {f"X-Padding-{i}": "a" * 8000 for i in range(9)}])
def test_headers_over_the_limit_are_a_json_431(settings, headers):
    """eventlet refuses a header line of 8 KB or more, or 64 KB of headers,
    before any route: with a bare 400 (no body) until session 25."""
    response = requests.get(f"{settings.gateway_url}/api/v3/ping", headers=headers, timeout=15)
    assert response.status_code == 431, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == -1100 and body["error"]["code"] == "HEADERS_TOO_LARGE"
    assert requests.get(f"{settings.gateway_url}/api/v3/ping", headers={"X-Padding": "a" * 8000},
                        timeout=15).status_code == 200


def test_an_empty_parameter_is_binances_1105_not_its_default(settings, reader):
    public = requests.get(f"{settings.gateway_url}/api/v3/depth?symbol={BINANCE}&limit=",
                          timeout=15)
    assert (public.status_code, public.json()) == (
        400, {"code": -1105, "msg": "Parameter 'limit' was empty."})
    mandatory = requests.get(f"{settings.gateway_url}/api/v3/depth?symbol=&limit=5", timeout=15)
    assert (mandatory.status_code, mandatory.json()["code"]) == (400, -1102)
    signed = kit.raw(settings, "GET", "/api/v3/account", reader, params={"recvWindow": ""})
    assert (signed.status_code, signed.json()) == (
        400, {"code": -1105, "msg": "Parameter 'recvWindow' was empty."})
    # Sent with values, the same requests answer.
    assert requests.get(f"{settings.gateway_url}/api/v3/depth?symbol={BINANCE}&limit=5",
                        timeout=15).status_code == 200
    assert kit.raw(settings, "GET", "/api/v3/account", reader).status_code == 200


@pytest.mark.parametrize("name, value, code", [
    # (session 26) Binance's -1100 for a recvWindow that is no number; -1131
    # names a window too large
    ("recvWindow", "²", -1100), ("recvWindow", "٥٠٠٠", -1100), ("recvWindow", "abc", -1100),
    ("recvWindow", "60001", -1131),
    ("timestamp", "²", -1102), ("timestamp", "١٧٩٦", -1102)])
def test_non_ascii_digits_in_a_signed_request_are_a_400(settings, reader, name, value, code):
    response = kit.raw(settings, "GET", "/api/v3/account", reader, params={name: value})
    assert (response.status_code, response.json()["code"]) == (400, code), response.text


def test_leading_zeros_are_read_as_signed(settings, reader):
    timestamp = f"0{int(time.time() * 1000)}"
    response = kit.raw(settings, "GET", "/api/v3/account", reader,
                       params={"timestamp": timestamp, "recvWindow": "05000"})
    assert response.status_code == 200, response.text
