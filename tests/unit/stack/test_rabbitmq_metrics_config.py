"""The rabbitmq.conf `make up` writes (stack/servers.py, with
stack/monitoring.py's rabbitmq_prometheus lines) has /metrics give the
node's totals: per object, every scrape rendered every queue, channel and
exchange of every vhost (~8,000 samples every 5 s on the dev broker, most
of them reply queues). The node reads it at its next start; the queues'
depths come from /metrics/detailed (tests/integration/stack/
test_rabbitmq_metrics.py checks both on a node of its own)."""
import os

from services.common.config import load_settings
from stack import servers


def rabbitmq_conf(tmp_path) -> dict[str, str]:
    # A run directory of its own: nothing running is asked or changed.
    settings = load_settings({**os.environ, "EXCHANGE_RUN_DIR": str(tmp_path / "run"),
                              "EXCHANGE_RABBITMQ_CLUSTER_NODES": ""})
    servers._rabbit_configure(settings)
    lines = (tmp_path / "run" / "rabbitmq" / "rabbitmq.conf").read_text().splitlines()
    return dict(line.split(" = ", 1) for line in lines if " = " in line)


def test_the_nodes_metrics_are_its_totals_and_the_plugin_listens_where_prometheus_scrapes(
        tmp_path):
    conf = rabbitmq_conf(tmp_path)
    assert conf["prometheus.return_per_object_metrics"] == "false"
    settings = load_settings()
    assert conf["prometheus.tcp.port"] == settings["EXCHANGE_RABBITMQ_METRICS_PORT"]
