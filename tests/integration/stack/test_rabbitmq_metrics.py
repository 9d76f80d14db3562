"""What Prometheus reads from a RabbitMQ node configured as `make up`
configures one (stack/servers.py's rabbitmq.conf, stack/monitoring.py's
rabbitmq_prometheus lines), scraped as the rendered monitoring/prometheus.yml
says: a node of this test's own (tests/integration/stack/private_rabbit.py),
since the dev stack's node reads a changed rabbitmq.conf only at its next
start.

The plugin's /metrics rendered every queue, channel and exchange of every
vhost at each scrape (prometheus.return_per_object_metrics = true): on the
dev broker ~8,000 samples and 620 KB every 5 s, most of them reply queues
Prometheus then dropped. The queues' depths that QueueBacklog needs come
from /metrics/detailed with only their families (job rabbitmq-queues)."""
import re

import pytest
import requests
import yaml
from kombu import Connection, Exchange, Producer, Queue
from prometheus_client.parser import text_string_to_metric_families

from services.common.config import REPO_ROOT
from stack.monitoring import prometheus_config
from tests.integration.stack.private_rabbit import private_node as started_node
from tests.integration.stack.private_rabbit import wait_for

QUEUE = "metrics-probe.backlog"
# The broker refreshes its queue metrics every 5 s (collect_statistics_interval).
REFRESH_TIMEOUT = 30


@pytest.fixture(scope="module")
def private_node(settings, test_run_dir):
    with started_node(settings, test_run_dir, "metricstest") as node:
        yield node


def scrape(url: str, params=None) -> list:
    text = requests.get(url, params=params, timeout=30).text
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def jobs(mine) -> dict:
    """The rendered scrape configs of the RabbitMQ jobs, by name."""
    config = yaml.safe_load(prometheus_config(mine))
    return {c["job_name"]: c for c in config["scrape_configs"]
            if c["job_name"].startswith("rabbitmq")}


def scrape_job(job: dict) -> list:
    target = job["static_configs"][0]["targets"][0]
    return scrape(f"http://{target}{job.get('metrics_path', '/metrics')}", job.get("params"))


def test_metrics_are_the_nodes_totals_and_each_queues_depth_comes_from_its_own_job(private_node):
    mine, _node = private_node
    with Connection(f"amqp://{mine['EXCHANGE_RABBITMQ_USER']}:{mine['EXCHANGE_RABBITMQ_PASSWORD']}"
                    f"@{mine.host}:{mine['EXCHANGE_RABBITMQ_PORT']}/"
                    f"{mine['EXCHANGE_RABBITMQ_VHOST']}") as conn:
        queue = Queue(QUEUE, Exchange(""), routing_key=QUEUE, durable=True)
        queue(conn.default_channel).declare()
        producer = Producer(conn.default_channel)
        for n in range(3):
            producer.publish({"n": n}, routing_key=QUEUE, serializer="json")

        found = jobs(mine)
        assert set(found) == {"rabbitmq", "rabbitmq-queues"}
        # The queue's depth, from the job QueueBacklog reads.
        assert wait_for(lambda: any(
            s.name == "rabbitmq_detailed_queue_messages_ready" and s.labels.get("queue") == QUEUE
            and s.value == 3 for s in scrape_job(found["rabbitmq-queues"])), REFRESH_TIMEOUT, 1)
        # /metrics: the node's totals, no series per queue or channel (the
        # connection above has one of each).
        totals = scrape_job(found["rabbitmq"])
        per_object = sorted({s.name for s in totals if {"queue", "channel"} & set(s.labels)})
        assert per_object == []
        assert any(s.name == "rabbitmq_queue_messages_ready" and not s.labels for s in totals)
        # Every RabbitMQ series an alert or recording rule reads is scraped.
        read = set()
        for path in (REPO_ROOT / "monitoring" / "rules").glob("*.yml"):
            read |= set(re.findall(r"\brabbitmq_\w+", path.read_text()))
        scraped = {s.name for job in found.values() for s in scrape_job(job)}
        assert read and read - scraped == set()
        # Everything per object is still there for whoever asks (the
        # order-path bench's counters, bench/order_path_bench.py).
        target = found["rabbitmq"]["static_configs"][0]["targets"][0]
        assert any(s.labels.get("queue") == QUEUE
                   for s in scrape(f"http://{target}/metrics/per-object"))
