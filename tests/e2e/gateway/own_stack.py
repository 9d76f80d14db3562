"""A gateway of this tree and the services it calls, as real processes in the
test namespace (EXCHANGE_TEST_SUFFIX's database, vhost and keyspace, on the
running stack's servers), for the e2e tests that count what the gateway
sends to a service: the demo stack's gateway and services serve every
other test run (their calls would be counted too) and run the code they
were started with.

Each service is ``nameko run`` with the test namespace's container config
(as tests/integration/crash does) and serves its Prometheus metrics on a
port of its own; ``entrypoint_calls`` reads how many calls each of its RPC
entrypoints has served (``exchange_entrypoint_duration_seconds_count``,
services/common/metrics.py).
"""
from __future__ import annotations

import re
import socket
import sys
import time
from pathlib import Path

import psycopg
import requests
import yaml
from nameko.standalone.rpc import ClusterRpcProxy

from services.common.config import REPO_ROOT, Settings
from services.common.migrations import apply_sql_migrations, service_sql_migrations
from stack.proc import Process

SERVICES = ("orders", "matching", "wallets", "users", "registry")
READY_S = 180.0
# The rate limits out of the way: the tests send bursts, and the IP limits
# count in the Memcached every gateway on this machine shares.
UNLIMITED = {"EXCHANGE_GATEWAY_WEIGHT_PER_MINUTE": "100000000",
             "EXCHANGE_GATEWAY_KEY_WEIGHT_PER_MINUTE": "100000000",
             "EXCHANGE_GATEWAY_ORDERS_PER_10S": "100000000",
             "EXCHANGE_GATEWAY_ORDERS_PER_DAY": "1000000000"}
_CALLS = re.compile(r'^exchange_entrypoint_duration_seconds_count\{([^}]*)\} ([0-9.e+]+)$',
                    re.M)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OwnStack:
    """``services`` and a gateway in the test namespace, under ``run``;
    ``settings``: the test namespace's with this gateway's port (what the
    testkits take)."""

    def __init__(self, test_settings: Settings, nameko_config: dict, run: Path,
                 services=SERVICES):
        """``nameko_config``: the test namespace's container config (the
        ``nameko_config`` fixture, tests/conftest.py)."""
        self.run = run
        self.config = {**nameko_config, "max_workers": 40}
        self.gateway_port = free_port()
        self.settings = test_settings.with_overrides(EXCHANGE_GATEWAY_PORT=str(self.gateway_port))
        self.metrics_ports = {name: free_port() for name in services}
        self.procs: dict[str, Process] = {}
        self.services = services

    def start(self) -> "OwnStack":
        # Every service's migrations (idempotent; the test database is made
        # empty, the integration tests' conftest migrates it too).
        with psycopg.connect(self.settings.postgres_dsn()) as conn:
            apply_sql_migrations(conn, service_sql_migrations())
        self.run.mkdir(parents=True, exist_ok=True)
        config_file = self.run / "nameko.yaml"
        config_file.write_text(yaml.safe_dump(self.config))
        env = {**self.settings.values, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1",
               "EXCHANGE_LOG_DIR": str(self.run)}
        for name in self.services:
            self._start(name, [sys.executable, "-m", "nameko", "run", "--config",
                               str(config_file), f"services.{name}.service"],
                        {**env, "EXCHANGE_METRICS_PORT": str(self.metrics_ports[name])})
        self._wait_services()
        self._start("gateway", [sys.executable, "-m", "gateway"],
                    {**env, **UNLIMITED, "EXCHANGE_METRICS_PORT": ""})
        self._wait_gateway()
        return self

    def _start(self, name: str, argv: list[str], env: dict) -> None:
        proc = Process(name=f"own-{name}", argv=argv, env=env, cwd=REPO_ROOT,
                       log=self.run / f"{name}.log", pid_file=self.run / f"{name}.pid")
        proc.start()
        self.procs[name] = proc

    def _wait_services(self) -> None:
        deadline = time.monotonic() + READY_S
        with ClusterRpcProxy(self.config, timeout=10) as rpc:
            for name in self.services:
                while True:
                    try:
                        getattr(rpc, name).health()
                        break
                    except Exception:  # noqa: BLE001 - not consuming yet
                        assert self.procs[name].running_pid(), \
                            f"{name} exited: see {self.run / name}.log"
                        assert time.monotonic() < deadline, f"{name} did not come up"
                        time.sleep(0.5)

    def _wait_gateway(self) -> None:
        deadline = time.monotonic() + READY_S
        while True:
            assert self.procs["gateway"].running_pid(), "the gateway exited"
            try:
                if requests.get(f"{self.settings.gateway_url}/health/live",
                                timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "the gateway did not come up"
            time.sleep(0.5)

    def entrypoint_calls(self, service: str) -> dict[str, int]:
        """{entrypoint: calls served so far} of the service's process."""
        text = requests.get(f"http://127.0.0.1:{self.metrics_ports[service]}/metrics",
                            timeout=10).text
        calls: dict[str, int] = {}
        for labels, value in _CALLS.findall(text):
            entrypoint = dict(re.findall(r'(\w+)="([^"]*)"', labels))["entrypoint"]
            calls[entrypoint] = calls.get(entrypoint, 0) + int(float(value))
        return calls

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop(timeout=10)
