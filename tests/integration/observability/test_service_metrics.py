"""What a service process serves at /metrics, read as Prometheus reads it:
a service container of this test's own (services.common.metrics'
ServiceMetrics on a free port, an outbox relay) on the test namespace's
PostgreSQL and RabbitMQ -- not the stack's processes, which run the code
they were started with."""
import time
import uuid

import eventlet
import pytest
import requests
import yaml
from nameko.rpc import rpc
from nameko.standalone.rpc import ServiceRpcProxy
from prometheus_client.parser import text_string_to_metric_families

from services.common.metrics import ServiceMetrics
from services.common.outbox import OutboxRelay, enqueue_event
from services.common.postgres import Database, make_pool
from stack.monitoring import prometheus_config

STREAM = f"test-metrics-{uuid.uuid4().hex[:8]}"


class MetricsProbe:
    name = "metrics_probe"
    metrics = ServiceMetrics(port=0)  # a free port of its own
    relay = OutboxRelay(STREAM)

    @rpc
    def ping(self):
        return "pong"


@pytest.fixture(scope="module")
def pool(test_settings):
    pool = make_pool(test_settings, max_size=2)
    yield pool
    pool.close()


@pytest.fixture
def probe(container_factory, nameko_config):
    container = container_factory(MetricsProbe, nameko_config)
    container.start()
    provider = next(d for d in container.dependencies if isinstance(d, ServiceMetrics))
    deadline = time.monotonic() + 10
    while provider.port is None:
        assert time.monotonic() < deadline, "the probe's /metrics never listened"
        eventlet.sleep(0.05)
    return f"http://127.0.0.1:{provider.port}/metrics"


def scrape(url: str) -> dict:
    """``{family name: family}`` of one scrape, parsed as Prometheus does."""
    text = requests.get(url, timeout=10).text
    return {family.name: family for family in text_string_to_metric_families(text)}


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        eventlet.sleep(0.1)


def test_the_relays_published_rows_are_a_counter_that_rate_can_read(probe, pool):
    """It was a gauge named exchange_outbox_published: a count that only
    grows (and starts again at 0 with the process) is a counter, named
    ``_total``, so that rate() and increase() read it and a restart is a
    counter reset (https://prometheus.io/docs/practices/naming/)."""
    with Database(pool).transaction() as conn:
        for n in range(3):
            enqueue_event(conn, STREAM, "metrics_probe", "thing_happened", f"{STREAM}-{n}", {"n": n})

    def published():
        family = scrape(probe).get("exchange_outbox_published")
        return family, [s for s in (family.samples if family else [])
                        if s.labels.get("stream") == STREAM]
    wait_for(lambda: published()[1] and published()[1][0].value >= 3)
    family, samples = published()
    assert family.type == "counter"
    assert [s.name for s in samples] == ["exchange_outbox_published_total"]
    assert samples[0].value == 3



def test_a_services_series_carry_no_service_label_of_their_own(probe, pool, settings,
                                                                nameko_config):
    """Prometheus labels each of our targets ``service`` (the scrape
    config); a process that set ``service`` too had it renamed
    ``exported_service`` on every series of its entrypoints, relays and
    consumers: the same value twice."""
    with ServiceRpcProxy(MetricsProbe.name, nameko_config, timeout=10) as probe_rpc:
        assert probe_rpc.ping() == "pong"
    families = scrape(probe)
    ours = {f"{s.name}{sorted(s.labels.items())}": s.labels for family in families.values()
            if family.name.startswith("exchange_") for s in family.samples}
    assert any('entrypoint' in labels and labels["entrypoint"] == "ping" for labels in ours.values())
    assert any(labels.get("stream") == STREAM for labels in ours.values())
    assert [series for series, labels in ours.items() if "service" in labels] == []
    # The label they carry in Prometheus is the target's, one per process.
    job = next(c for c in yaml.safe_load(prometheus_config(settings))["scrape_configs"]
               if c["job_name"] == "exchange")
    assert job.get("honor_labels") is not True
    assert job["static_configs"] and all(group["labels"].get("service")
                                         for group in job["static_configs"])
