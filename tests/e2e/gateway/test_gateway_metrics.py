"""The gateway's /metrics (its own port, not the public one) says why a
request failed whichever API it came through, with label values the
clients cannot invent. The HttpErrorRatio runbook reads the ``code`` label
(TIMEOUT/UNAVAILABLE: a service; INTERNAL: the gateway): a Binance body's
code is Binance's number, so every /api/v3 refusal was ``code=""``.

Against another gateway (one of this tree): EXCHANGE_GATEWAY_PORT and
EXCHANGE_METRICS_PORT_GATEWAY name it."""
import requests
from prometheus_client.parser import text_string_to_metric_families


def responses(settings) -> dict[tuple, float]:
    url = f"http://{settings.host}:{settings['EXCHANGE_METRICS_PORT_GATEWAY']}/metrics"
    text = requests.get(url, timeout=5).text
    return {(s.labels["route"], s.labels["method"], s.labels["status"], s.labels["code"]): s.value
            for family in text_string_to_metric_families(text)
            if family.name == "exchange_http_responses" for s in family.samples
            if s.name == "exchange_http_responses_total"}


def test_a_binance_refusal_is_counted_with_its_native_code(settings, gateway_url):
    response = requests.get(f"{gateway_url}/api/v3/account", timeout=10)  # no API key
    assert response.status_code == 401 and isinstance(response.json()["code"], int)
    counted = {key: value for key, value in responses(settings).items()
               if key[:3] == ("/api/v3/account", "GET", "401")}
    assert "" not in {code for _, _, _, code in counted}, counted
    assert counted and all(code.isupper() for _, _, _, code in counted), counted


def test_a_method_a_client_invents_is_not_a_label_value(settings, gateway_url):
    for n in range(2):
        response = requests.request(f"INVENTEDE2E{n}", f"{gateway_url}/health", timeout=10)
        assert response.status_code == 405
    counted = responses(settings)
    assert not [key for key in counted if key[1].startswith("INVENTEDE2E")]
    assert counted.get(("unmatched", "OTHER", "405", "METHOD_NOT_ALLOWED"), 0) >= 2
