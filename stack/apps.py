"""Our own processes: one per Nameko service found under services/, the gateway
and the frontend backend, whichever exist."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable

import yaml

from services.common import health
from services.common.config import REPO_ROOT, Settings
from stack.monitoring import process_env
from stack.proc import Process
from stack.servers import run_dir


@dataclass
class App:
    name: str
    address: str
    process: Process
    probe: Callable[[Settings], health.Probe]


def nameko_config_file(settings: Settings, principal: str | None = None):
    """The operator's Nameko config (tools); with every call, each service's
    own too (``nameko-<service>.yaml``: its own RabbitMQ login)."""
    if principal is None:
        for name in service_names():
            nameko_config_file(settings, name)
    path = run_dir(settings, f"nameko-{principal}.yaml" if principal else "nameko.yaml")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(settings.nameko_config(principal=principal)))
    os.chmod(path, 0o600)  # a password is in the AMQP URI
    return path


def service_names() -> list[str]:
    return sorted(p.parent.name for p in (REPO_ROOT / "services").glob("*/service.py"))


def rpc_proxy_factory(settings: Settings, timeout: float = 5.0):
    from nameko.standalone.rpc import ClusterRpcProxy
    return lambda: ClusterRpcProxy(settings.nameko_config(), timeout=timeout)


def _service_probe(name: str):
    return lambda settings: health.probe_service(rpc_proxy_factory(settings), name)


def _http_probe(name: str, url: str):
    def probe(settings: Settings) -> health.Probe:
        def check():
            import requests
            response = requests.get(url, timeout=health.PROBE_TIMEOUT)
            if response.status_code >= 500 and "components" not in response.text:
                response.raise_for_status()
            return f"HTTP {response.status_code}"
        return health.timed(name, check)
    return probe


def apps(settings: Settings) -> list[App]:
    python = sys.executable
    env = {k: v for k, v in settings.values.items()}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    # Our Python processes run as the invoking user: the virtualenv's
    # interpreter may live where the servers' system user cannot read (pyenv).
    user = None
    found = []
    for name in service_names():
        config = run_dir(settings, f"nameko-{name}.yaml")
        argv = [python, "-m", "nameko", "run", "--config", str(config), f"services.{name}.service"]
        # Each service logs in to RabbitMQ (stack/rabbitmq_access.py) and to
        # PostgreSQL (stack/prepare.py postgres_roles) as itself.
        own = {**process_env(settings, name), "EXCHANGE_RABBITMQ_PRINCIPAL": name,
               "EXCHANGE_POSTGRES_PRINCIPAL": name}
        found.append(App(f"service:{name}", "rpc over amqp", Process(
            name=f"service-{name}", argv=argv, env={**env, **own},
            cwd=REPO_ROOT,
            log=run_dir(settings, "logs", f"service-{name}.log"),
            pid_file=run_dir(settings, "pids", f"service-{name}.pid"), user=user),
            _service_probe(name)))
    for name, port_key in (("gateway", "EXCHANGE_GATEWAY_PORT"),
                           ("frontend_api", "EXCHANGE_FRONTEND_PORT")):
        if (REPO_ROOT / name / "__main__.py").exists():
            url = f"http://{settings.host}:{settings[port_key]}"
            principal = "gateway" if name == "gateway" else ""
            own = {**process_env(settings, name), "EXCHANGE_RABBITMQ_PRINCIPAL": principal,
                   "EXCHANGE_POSTGRES_PRINCIPAL": principal}
            found.append(App(name, url, Process(
                name=name, argv=[python, "-m", name], env={**env, **own},
                cwd=REPO_ROOT,
                log=run_dir(settings, "logs", f"{name}.log"),
                pid_file=run_dir(settings, "pids", f"{name}.pid"), user=user),
                _http_probe(name, url + "/health")))
    return found
