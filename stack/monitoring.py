"""Monitoring of the local stack: Prometheus, Alertmanager and the exporters,
started by `make up` like the other servers (127.0.0.1, non-default ports,
data under run/).

What scrapes what (monitoring/prometheus.yml is the template):
- every Nameko service and the gateway: /metrics on its own port
  (EXCHANGE_METRICS_PORT_<NAME>, services.common.metrics);
- RabbitMQ: its rabbitmq_prometheus plugin; Keycloak: /metrics on its
  management port (KC_METRICS_ENABLED); Cassandra: the JMX exporter agent
  (Maven Central) inside its JVM;
- PostgreSQL: prometheus-postgres-exporter, with the exchange's own queries
  (monitoring/postgres-queries.yml: outbox backlog, settlement lag, parked
  events -- visible while the service that owns them is down);
- Memcached: monitoring/memcached_exporter.py (Debian bookworm has no
  memcached exporter package); the machine: prometheus-node-exporter.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

from services.common import health
from services.common.config import REPO_ROOT, Settings, service_names
from stack import servers
from stack.proc import Process, StackError
from stack.servers import Server, _binary, _mvn, _owned_dir, _proc, run_dir

MONITORING_DIR = REPO_ROOT / "monitoring"
JMX_AGENT_ARTIFACT = "io.prometheus.jmx:jmx_prometheus_javaagent"

# ---------------------------------------------------------------- our processes' ports

def metrics_port_key(process: str) -> str:
    """``service-orders`` / ``orders`` / ``gateway`` -> EXCHANGE_METRICS_PORT_ORDERS ..."""
    name = process.removeprefix("service-").removeprefix("service:")
    return "EXCHANGE_METRICS_PORT_" + name.upper()


def process_env(settings: Settings, process: str) -> dict[str, str]:
    """What one of our Python processes needs to expose metrics and write JSON logs."""
    return {"EXCHANGE_METRICS_PORT": settings.get(metrics_port_key(process), "") or "",
            "EXCHANGE_LOG_DIR": str(run_dir(settings, "logs"))}


def app_targets(settings: Settings) -> list[tuple[str, str]]:
    """``(name, host:port)`` of every process of ours that serves /metrics."""
    names = service_names() + [n for n in ("gateway", "frontend_api")
                               if (REPO_ROOT / n / "__main__.py").exists()]
    return [(n, f"{settings.host}:{settings[metrics_port_key(n)]}") for n in names
            if settings.get(metrics_port_key(n))]


def _render(text: str, settings: Settings, extra: dict[str, str] | None = None) -> str:
    values = {**settings.values, **(extra or {})}

    def value(match):
        key = match.group(1)
        if key not in values:
            raise StackError(f"monitoring template needs {key}: add it to config/defaults.env")
        return values[key]
    return re.sub(r"\$\{([A-Z0-9_]+)\}", value, text)


def _http_ready(name: str, url: str):
    def probe(settings: Settings) -> health.Probe:
        def check():
            import requests
            response = requests.get(url.format(host=settings.host, **settings.values),
                                    timeout=health.PROBE_TIMEOUT)
            response.raise_for_status()
            return f"HTTP {response.status_code}"
        return health.timed(name, check, required=False)
    return probe


# ---------------------------------------------------------------- Prometheus

def prometheus_config(settings: Settings) -> str:
    """monitoring/prometheus.yml rendered. It names the rule files by a glob,
    and carries their digest: Prometheus reads them only at start and reload,
    and a reload follows a change of this text."""
    app_lines = "\n".join(
        f"      - targets: ['{address}']\n        labels: {{service: '{name}'}}"
        for name, address in app_targets(settings))
    rules = MONITORING_DIR / "rules"
    digest = hashlib.sha256()
    for path in sorted(rules.glob("*.yml")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return _render((MONITORING_DIR / "prometheus.yml").read_text(), settings, {
        "APP_TARGETS": app_lines or "      - targets: []",
        "RULES_DIR": str(rules),
        "RULES_DIGEST": digest.hexdigest(),
    })


def _prometheus_configure(settings: Settings) -> None:
    from stack.servers import SERVERS
    rabbit = next(s for s in SERVERS if s.name == "rabbitmq")
    if rabbit.process(settings).running_pid() is not None:
        try:
            enable_rabbitmq_plugin_online(settings)
        except StackError:
            pass  # still booting: it reads the plugin from its config files
    base = _owned_dir(settings, run_dir(settings, "prometheus"))
    _owned_dir(settings, base / "data")
    config = prometheus_config(settings)
    path = base / "prometheus.yml"
    changed = not path.exists() or path.read_text() != config
    path.write_text(config)
    result = subprocess.run([_binary("/usr/bin/promtool", "promtool", package="prometheus"),
                             "check", "config", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"monitoring/prometheus.yml or rules do not check: "
                         f"{(result.stdout + result.stderr).strip()[-400:]}")
    if changed and _prometheus_process(settings).running_pid() is not None:
        reload(settings, "EXCHANGE_PROMETHEUS_PORT")


def reload(settings: Settings, port_key: str) -> None:
    import requests
    try:
        requests.post(f"http://{settings.host}:{settings[port_key]}/-/reload", timeout=5)
    except requests.RequestException as exc:
        raise StackError(f"could not reload the new monitoring config ({port_key}): {exc}")


def _prometheus_process(settings: Settings) -> Process:
    base = run_dir(settings, "prometheus")
    return _proc(settings, "prometheus", [
        _binary("/usr/bin/prometheus", package="prometheus"),
        f"--config.file={base / 'prometheus.yml'}",
        f"--storage.tsdb.path={base / 'data'}",
        f"--storage.tsdb.retention.time={settings['EXCHANGE_PROMETHEUS_RETENTION']}",
        f"--web.listen-address={settings.host}:{settings['EXCHANGE_PROMETHEUS_PORT']}",
        "--web.enable-lifecycle",  # POST /-/reload after `make up` rewrote the config
        "--log.level=warn",
    ], cwd=base)


# ---------------------------------------------------------------- Alertmanager

def _alertmanager_configure(settings: Settings) -> None:
    base = _owned_dir(settings, run_dir(settings, "alertmanager"))
    _owned_dir(settings, base / "data")
    config = _render((MONITORING_DIR / "alertmanager.yml").read_text(), settings)
    path = base / "alertmanager.yml"
    changed = not path.exists() or path.read_text() != config
    path.write_text(config)
    if changed and _alertmanager_process(settings).running_pid() is not None:
        reload(settings, "EXCHANGE_ALERTMANAGER_PORT")


def _alertmanager_process(settings: Settings) -> Process:
    base = run_dir(settings, "alertmanager")
    return _proc(settings, "alertmanager", [
        _binary("/usr/bin/prometheus-alertmanager", package="prometheus-alertmanager"),
        f"--config.file={base / 'alertmanager.yml'}",
        f"--storage.path={base / 'data'}",
        f"--web.listen-address={settings.host}:{settings['EXCHANGE_ALERTMANAGER_PORT']}",
        "--cluster.listen-address=",  # a single node: no gossip port
        "--log.level=warn",
    ], cwd=base)


# ---------------------------------------------------------------- exporters

def _node_exporter_process(settings: Settings) -> Process:
    return _proc(settings, "node-exporter", [
        _binary("/usr/bin/prometheus-node-exporter", package="prometheus-node-exporter"),
        f"--web.listen-address={settings.host}:{settings['EXCHANGE_NODE_EXPORTER_PORT']}",
        "--log.level=warn",
    ])


def _postgres_exporter_process(settings: Settings) -> Process:
    dsn = "postgresql://{}:{}@{}:{}/{}?sslmode=disable".format(
        settings["EXCHANGE_POSTGRES_USER"], settings["EXCHANGE_POSTGRES_PASSWORD"],
        settings.host, settings["EXCHANGE_POSTGRES_PORT"], settings["EXCHANGE_POSTGRES_DB"])
    return _proc(settings, "postgres-exporter", [
        _binary("/usr/bin/prometheus-postgres-exporter", package="prometheus-postgres-exporter"),
        f"--web.listen-address={settings.host}:{settings['EXCHANGE_POSTGRES_EXPORTER_PORT']}",
        f"--extend.query-path={MONITORING_DIR / 'postgres-queries.yml'}",
        "--log.level=warn",
    ], env={"DATA_SOURCE_NAME": dsn})  # the password stays out of argv (ps)


def _memcached_exporter_process(settings: Settings) -> Process:
    return Process(
        name="memcached-exporter",
        argv=[sys.executable, str(MONITORING_DIR / "memcached_exporter.py"),
              "--listen", f"{settings.host}:{settings['EXCHANGE_MEMCACHED_EXPORTER_PORT']}",
              "--memcached", f"{settings.host}:{settings['EXCHANGE_MEMCACHED_PORT']}"],
        log=run_dir(settings, "logs", "memcached-exporter.log"),
        pid_file=run_dir(settings, "pids", "memcached-exporter.pid"),
        env={"PYTHONPATH": str(REPO_ROOT)}, cwd=REPO_ROOT)


# ---------------------------------------------------------------- Cassandra's JMX agent

def jmx_agent_jar(settings: Settings) -> Path:
    version = settings["EXCHANGE_JMX_EXPORTER_VERSION"]
    return run_dir(settings, "opt", f"jmx_prometheus_javaagent-{version}.jar")


def install_jmx_agent(settings: Settings) -> None:
    jar = jmx_agent_jar(settings)
    if jar.exists():
        return
    jar.parent.mkdir(parents=True, exist_ok=True)
    _mvn("dependency:copy",
         f"-Dartifact={JMX_AGENT_ARTIFACT}:{settings['EXCHANGE_JMX_EXPORTER_VERSION']}",
         f"-DoutputDirectory={jar.parent}")


def cassandra_agent_args(settings: Settings) -> list[str]:
    """The JVM option that loads the JMX exporter into Cassandra (its own
    HTTP listener on 127.0.0.1), or nothing before the jar is installed."""
    jar = jmx_agent_jar(settings)
    if not jar.exists():
        return []
    port = settings["EXCHANGE_CASSANDRA_METRICS_PORT"]
    return [f"-javaagent:{jar}={settings.host}:{port}:{MONITORING_DIR / 'cassandra-jmx.yml'}"]


# ---------------------------------------------------------------- the servers

def _nothing(settings: Settings) -> None:
    return None


def _install_monitoring(settings: Settings) -> None:
    for binary, package in (("/usr/bin/prometheus", "prometheus"),
                            ("/usr/bin/prometheus-alertmanager", "prometheus-alertmanager")):
        _binary(binary, package=package)
    install_jmx_agent(settings)


MONITORING: list[Server] = [
    Server("node-exporter", ["EXCHANGE_NODE_EXPORTER_PORT"],
           _http_ready("node-exporter", "http://{host}:{EXCHANGE_NODE_EXPORTER_PORT}/metrics"),
           20, _nothing, _nothing, _node_exporter_process),
    Server("postgres-exporter", ["EXCHANGE_POSTGRES_EXPORTER_PORT"],
           _http_ready("postgres-exporter",
                       "http://{host}:{EXCHANGE_POSTGRES_EXPORTER_PORT}/metrics"),
           20, _nothing, _nothing, _postgres_exporter_process),
    Server("memcached-exporter", ["EXCHANGE_MEMCACHED_EXPORTER_PORT"],
           _http_ready("memcached-exporter",
                       "http://{host}:{EXCHANGE_MEMCACHED_EXPORTER_PORT}/metrics"),
           20, _nothing, _nothing, _memcached_exporter_process),
    Server("alertmanager", ["EXCHANGE_ALERTMANAGER_PORT"],
           _http_ready("alertmanager", "http://{host}:{EXCHANGE_ALERTMANAGER_PORT}/-/ready"),
           30, _nothing, _alertmanager_configure, _alertmanager_process),
    Server("prometheus", ["EXCHANGE_PROMETHEUS_PORT"],
           _http_ready("prometheus", "http://{host}:{EXCHANGE_PROMETHEUS_PORT}/-/ready"),
           60, _install_monitoring, _prometheus_configure, _prometheus_process),
]


# Registered once, whichever of stack.servers and stack.monitoring loads first.
if not any(server.name == "prometheus" for server in servers.SERVERS):
    servers.SERVERS += MONITORING


def addresses(settings: Settings) -> dict[str, str]:
    host = settings.host
    return {
        "prometheus": f"http://{host}:{settings['EXCHANGE_PROMETHEUS_PORT']}",
        "alertmanager": f"http://{host}:{settings['EXCHANGE_ALERTMANAGER_PORT']}",
        "node-exporter": f"http://{host}:{settings['EXCHANGE_NODE_EXPORTER_PORT']}/metrics",
        "postgres-exporter": f"http://{host}:{settings['EXCHANGE_POSTGRES_EXPORTER_PORT']}/metrics",
        "memcached-exporter": f"http://{host}:{settings['EXCHANGE_MEMCACHED_EXPORTER_PORT']}/metrics",
    }


# The rabbitmq_prometheus plugin's /metrics returns node totals unless it
# returns per-object metrics; Prometheus reads the queues' depths (what
# QueueBacklog needs) from /metrics/detailed, with only these families
# (monitoring/prometheus.yml, job rabbitmq-queues), which needs no setting.
RABBITMQ_PER_OBJECT_METRICS = "false"


def rabbitmq_config_lines(settings: Settings) -> list[str]:
    """rabbitmq.conf lines for the rabbitmq_prometheus plugin: its listener,
    and /metrics as node totals. Per object, every scrape (every 5 s) rendered
    every queue, channel and connection of every vhost: ~25 series per queue,
    ~8,000 samples and 620 KB a scrape of the dev broker on 2026-12-07, most
    of them reply queues (rpc.reply-<name>-<uuid>) that Prometheus then
    dropped. /metrics/per-object still gives everything to whoever asks (the
    order-path bench's counters)."""
    return [f"prometheus.tcp.ip = {settings.host}",
            f"prometheus.tcp.port = {settings['EXCHANGE_RABBITMQ_METRICS_PORT']}",
            f"prometheus.return_per_object_metrics = {RABBITMQ_PER_OBJECT_METRICS}"]


def enable_rabbitmq_plugin_online(settings: Settings) -> list[str]:
    """A node started before the plugin was configured gets it without a restart."""
    from stack.servers import rabbitmqctl
    port = settings.int("EXCHANGE_RABBITMQ_METRICS_PORT")
    if health.port_open(settings.host, port):
        return []
    rabbitmqctl(settings, "eval", "application:set_env(rabbitmq_prometheus, tcp_config, "
                f"[{{port, {port}}}, {{ip, \"{settings.host}\"}}]), "
                "application:set_env(rabbitmq_prometheus, return_per_object_metrics, "
                f"{RABBITMQ_PER_OBJECT_METRICS}).")
    plugins = _binary("/usr/lib/rabbitmq/bin/rabbitmq-plugins", package="rabbitmq-server")
    from stack.servers import _rabbit_env
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", **_rabbit_env(settings)}
    user = settings["EXCHANGE_SYSTEM_USER"] if os.geteuid() == 0 else None
    result = subprocess.run([plugins, "--quiet", "enable", "--online", "rabbitmq_prometheus"],
                            env=env, capture_output=True, text=True, user=user,
                            cwd=str(run_dir(settings, "rabbitmq")))
    if result.returncode != 0:
        raise StackError(f"could not enable rabbitmq_prometheus: {result.stderr.strip()[:300]}")
    return ["rabbitmq_prometheus enabled"]
