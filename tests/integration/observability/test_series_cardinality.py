"""Series whose label values are made up at run time (a UUID per RPC proxy)
do not reach Prometheus: RabbitMQ exports every queue (its /metrics/detailed
for the job rabbitmq-queues; its /metrics, per object until 2026-12-07), and
each RPC proxy's reply queue (``rpc.reply-<name>-<uuid>``) was a new set of series. The running
stack's Prometheus held 12,963 queue label values over 9 hours, 12,382 of
them reply queues; a scrape of RabbitMQ returned up to 50,000 samples (96%
of all samples) and took up to 4 s, the scrape timeout.

The check applies the rabbitmq jobs' ``metric_relabel_configs`` from the
rendered monitoring/prometheus.yml to a live scrape of RabbitMQ at each
job's path and parameters, as Prometheus does, without reloading the
running Prometheus."""
import re

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from stack.monitoring import prometheus_config

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def scrape_config(settings, job: str) -> dict:
    config = yaml.safe_load(prometheus_config(settings))
    return next(c for c in config["scrape_configs"] if c["job_name"] == job)


def kept(labels: dict, relabel_configs: list[dict]) -> bool:
    """Whether Prometheus keeps a sample: the ``keep`` and ``drop`` actions
    (the only ones these tests need), anchored regexes as Prometheus's."""
    for rule in relabel_configs:
        action = rule.get("action", "replace")
        assert action in ("keep", "drop"), f"relabel action {action} not modelled here"
        value = rule.get("separator", ";").join(labels.get(name, "")
                                                for name in rule["source_labels"])
        matched = re.fullmatch(rule.get("regex", "(.*)"), value) is not None
        if matched == (action == "drop"):
            return False
    return True


def scraped_queues(job: dict) -> tuple[set[str], set[str]]:
    """The queue label values of a live scrape of ``job``'s target (its
    metrics_path and params, as Prometheus asks), and those its
    metric_relabel_configs keep."""
    relabel = job.get("metric_relabel_configs", [])
    target = job["static_configs"][0]["targets"][0]
    text = requests.get(f"http://{target}{job.get('metrics_path', '/metrics')}",
                        params=job.get("params"), timeout=30).text
    queues, kept_queues = set(), set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            queue = sample.labels.get("queue")
            if queue is None:
                continue
            queues.add(queue)
            if kept({"__name__": sample.name, **sample.labels}, relabel):
                kept_queues.add(queue)
    return queues, kept_queues


def test_rabbitmq_reply_queues_do_not_become_series(settings, stack_rpc):
    stack_rpc.users.health()  # this test's own proxy has a reply queue named by a UUID
    queues, kept_queues = scraped_queues(scrape_config(settings, "rabbitmq-queues"))
    assert any(UUID.search(q) for q in queues), "no reply queue to check against"
    assert sorted(q for q in kept_queues if UUID.search(q)) == []
    # The queues QueueBacklog is for stay (the runbook names these).
    assert "wallets.settlement" in kept_queues
    assert any(q.startswith("matching.commands.") for q in kept_queues)


def test_the_rabbitmq_jobs_node_totals_carry_no_queue(settings):
    """Each queue's series come from the rabbitmq-queues job only: the
    rabbitmq job's /metrics are the node's totals, also from a node started
    before prometheus.return_per_object_metrics was turned off."""
    assert scrape_config(settings, "rabbitmq").get("metrics_path", "/metrics") == "/metrics"
    _, kept_queues = scraped_queues(scrape_config(settings, "rabbitmq"))
    assert kept_queues == set()
