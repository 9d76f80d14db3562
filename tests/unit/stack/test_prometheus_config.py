"""`make up` renders monitoring/prometheus.yml into run/prometheus/ and
reloads a running Prometheus when the rendered file changed. Prometheus
reads its rule files (monitoring/rules/*.yml, named by a glob) only at start
and reload, so a changed rule must change the rendered file too: it did not,
and a fixed alert stayed unloaded until somebody reloaded by hand."""
import os
import shutil

from services.common.config import load_settings
from stack import monitoring


def test_a_changed_rule_file_changes_the_rendered_config(tmp_path, monkeypatch):
    copy = tmp_path / "monitoring"
    shutil.copytree(monitoring.MONITORING_DIR, copy)
    monkeypatch.setattr(monitoring, "MONITORING_DIR", copy)
    # A run directory of its own: no Prometheus or RabbitMQ pid there, so
    # nothing running is reloaded or asked for its plugins.
    settings = load_settings({**os.environ, "EXCHANGE_RUN_DIR": str(tmp_path / "run")})
    rendered = tmp_path / "run" / "prometheus" / "prometheus.yml"

    monitoring._prometheus_configure(settings)
    before = rendered.read_text()
    monitoring._prometheus_configure(settings)
    assert rendered.read_text() == before  # nothing changed: no reload

    with (copy / "rules" / "alerts.yml").open("a") as rules:
        rules.write("# an edited rule file\n")
    monitoring._prometheus_configure(settings)
    assert rendered.read_text() != before
