"""The label values of our own series stay few and bounded whatever clients
send, and the series a rule or a dashboard panel reads exist before the
first event they count (an absent series reads as "no data", not 0)."""
import flask
import pytest
from prometheus_client import REGISTRY

from services.common import consumer, metrics


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels)


@pytest.fixture
def app(monkeypatch):
    monkeypatch.delenv("EXCHANGE_METRICS_PORT", raising=False)  # serve no /metrics port
    monkeypatch.delenv("EXCHANGE_LOG_DIR", raising=False)
    app = flask.Flask("metrics-labels")

    @app.get("/labels-probe")
    def probe():
        return "ok"

    metrics.instrument_flask(app)
    return app


def test_an_http_method_invented_by_a_client_does_not_become_a_label_value(app):
    """Werkzeug passes any method token through (the gateway answers 404/405),
    and each distinct method was a new set of ~20 series in the gateway and
    in Prometheus: unbounded series from unauthenticated requests."""
    client = app.test_client()
    for n in range(3):
        assert client.open("/labels-probe", method=f"INVENTED{n}").status_code == 405
        assert client.open(f"/nowhere-{n}", method=f"INVENTED{n}").status_code == 404
    methods = {s.labels["method"] for family in REGISTRY.collect()
               if family.name in ("exchange_http_request_duration_seconds",
                                  "exchange_http_responses")
               for s in family.samples}
    assert not {m for m in methods if m.startswith("INVENTED")}
    assert sample("exchange_http_responses_total", route="unmatched", method="OTHER",
                  status="405", code="") >= 3
    client.get("/labels-probe")
    assert sample("exchange_http_responses_total", route="/labels-probe", method="GET",
                  status="200", code="") >= 1


def test_a_consumers_series_exist_before_its_first_batch():
    """exchange:consumer_messages:rate1m and the dashboard's "Messages
    handled/s by queue" read exchange_consumer_messages_total: absent until
    a consumer's first batch, an idle or stuck consumer was no data at all."""
    queue = "unit.labels.idle"
    consumer.observed(queue, lambda batch: None)
    assert sample("exchange_consumer_messages_total", queue=queue) == 0
    assert sample("exchange_consumer_batch_errors_total", queue=queue) == 0
    assert sample("exchange_consumer_batch_duration_seconds_count", queue=queue) == 0
