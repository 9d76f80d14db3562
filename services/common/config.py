"""Settings for every process of the exchange, read in one place.

Defaults live in ``config/defaults.env`` (local-dev values); any key can be
overridden by an environment variable of the same name. Production deployments
(Ansible) set the environment and never rely on the local-dev defaults.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULTS_FILE = REPO_ROOT / "config" / "defaults.env"


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: line without '=': {raw!r}")
        values[key.strip()] = value.strip()
    return values


@dataclass(frozen=True)
class Settings:
    values: dict[str, str]

    def __getitem__(self, key: str) -> str:
        return self.values[key]

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key, default)

    def int(self, key: str) -> int:
        return int(self.values[key])

    def with_overrides(self, **overrides: str) -> "Settings":
        return Settings({**self.values, **overrides})

    # -- derived addresses ---------------------------------------------------
    @property
    def host(self) -> str:
        return self["EXCHANGE_BIND_HOST"]

    def server_host(self, server: str) -> str:
        """Where clients reach a server: EXCHANGE_<SERVER>_HOST when set (the
        compose stack names its containers), else the local stack's bind host."""
        return self.get(f"EXCHANGE_{server.upper()}_HOST") or self.host

    @cached_property
    def run_dir(self) -> Path:
        path = Path(self["EXCHANGE_RUN_DIR"])
        return path if path.is_absolute() else REPO_ROOT / path

    def amqp_uri(self, vhost: str | None = None) -> str:
        return "amqp://{}:{}@{}:{}/{}".format(
            self["EXCHANGE_RABBITMQ_USER"], self["EXCHANGE_RABBITMQ_PASSWORD"],
            self.server_host("rabbitmq"), self["EXCHANGE_RABBITMQ_PORT"],
            vhost or self["EXCHANGE_RABBITMQ_VHOST"])

    def postgres_dsn(self, dbname: str | None = None) -> str:
        return "host={} port={} user={} password={} dbname={}".format(
            self.server_host("postgres"), self["EXCHANGE_POSTGRES_PORT"], self["EXCHANGE_POSTGRES_USER"],
            self["EXCHANGE_POSTGRES_PASSWORD"], dbname or self["EXCHANGE_POSTGRES_DB"])

    @property
    def keycloak_url(self) -> str:
        return f"http://{self.server_host('keycloak')}:{self['EXCHANGE_KEYCLOAK_PORT']}"

    @property
    def keycloak_issuer(self) -> str:
        return f"{self.keycloak_url}/realms/{self['EXCHANGE_KEYCLOAK_REALM']}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.server_host('gateway')}:{self['EXCHANGE_GATEWAY_PORT']}"

    def nameko_config(self, vhost: str | None = None) -> dict:
        return {
            "AMQP_URI": self.amqp_uri(vhost),
            "rpc_exchange": "exchange-rpc",
            "serializer": "json",
            "max_workers": 10,
            "parent_calls_tracked": 10,
            # services/common/queues.py: classic, or quorum in a cluster.
            "RPC_QUEUE_TYPE": self.get("EXCHANGE_RABBITMQ_QUEUE_TYPE") or "classic",
        }


def service_names() -> list[str]:
    """The Nameko services of this repo: every services/<name>/service.py."""
    return sorted(p.parent.name for p in (REPO_ROOT / "services").glob("*/service.py"))


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    values = read_env_file(DEFAULTS_FILE)
    for key in list(values):
        if key in environ:
            values[key] = environ[key]
    for key, value in environ.items():
        if key.startswith("EXCHANGE_"):
            values.setdefault(key, value)
    return Settings(values)
