"""Settings for every process of the exchange, read in one place.

Defaults live in ``config/defaults.env`` (local-dev values); any key can be
overridden by an environment variable of the same name. Production deployments
(Ansible) set the environment and never rely on the local-dev defaults.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import quote

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULTS_FILE = REPO_ROOT / "config" / "defaults.env"
# Nameko's RPC exchange (requests routed by "<service>.<method>", replies by
# the caller's reply key); its topic permissions are who may call what
# (stack/rabbitmq_access.py).
RPC_EXCHANGE = "exchange-rpc"
# Engine commands (orders -> matching, and matching's own admin commands) go
# through this topic exchange, routed by the command queue's name
# (``matching.commands.<market>``; services.common.outbox), not through the
# default exchange: a RabbitMQ user allowed to publish to the default exchange
# may publish to every queue, while who may publish here, and with which
# routing keys, is set per user (stack/rabbitmq_access.py: orders, matching).
COMMANDS_EXCHANGE = "exchange-commands"
# AMQP logins besides the services' own (one per services/<name>/service.py):
# the gateway, and the chain watcher that credits deposits. The operator's
# login (EXCHANGE_RABBITMQ_USER) is for the stack, tools and tests.
OTHER_AMQP_PRINCIPALS = ("gateway", "deposit_watcher")
# Tests run in namespaces of their own, never the demo's data: database
# <db><suffix>, vhost <vhost><suffix>, keyspace <keyspace><suffix>. "_test"
# unless EXCHANGE_TEST_SUFFIX names another ("_test_<name>"): two test runs
# sharing one namespace consume each other's messages (a replicated handler's
# event, an RPC answered by the other run's service). `make up` with it set
# prepares that namespace as well as "_test".
DEFAULT_TEST_SUFFIX = "_test"
TEST_SUFFIX_SHAPE = re.compile(r"_test(_[a-z0-9]{1,16})?")


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

    @property
    def test_suffix(self) -> str:
        """The test namespaces' suffix (see DEFAULT_TEST_SUFFIX)."""
        suffix = self.get("EXCHANGE_TEST_SUFFIX") or DEFAULT_TEST_SUFFIX
        if not TEST_SUFFIX_SHAPE.fullmatch(suffix):
            raise ValueError(f"EXCHANGE_TEST_SUFFIX must look like _test or _test_<a-z0-9>, "
                             f"not {suffix[:40]!r}")
        return suffix

    @property
    def test_suffixes(self) -> list[str]:
        """Every test namespace to prepare: the default one and this environment's."""
        return sorted({DEFAULT_TEST_SUFFIX, self.test_suffix})

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

    @property
    def amqp_principal(self) -> str:
        """Whom this process logs in to RabbitMQ as: EXCHANGE_RABBITMQ_PRINCIPAL
        (stack/apps.py sets it per service and for the gateway), else the
        operator."""
        return self.get("EXCHANGE_RABBITMQ_PRINCIPAL") or self["EXCHANGE_RABBITMQ_USER"]

    def amqp_login(self, principal: str | None = None) -> tuple[str, str]:
        """``(user, password)`` of ``principal`` (default: this process's).
        A principal's RabbitMQ user is its name; its password is
        EXCHANGE_RABBITMQ_PASSWORD_<NAME> (each host is given only its own)."""
        return self._login("RABBITMQ", principal or self.amqp_principal)

    def _login(self, server: str, principal: str) -> tuple[str, str]:
        """A principal's own login to a server (RABBITMQ, POSTGRES): its name
        and EXCHANGE_<SERVER>_PASSWORD_<NAME>; the operator's for the operator."""
        if principal == self[f"EXCHANGE_{server}_USER"]:
            return principal, self[f"EXCHANGE_{server}_PASSWORD"]
        key = f"EXCHANGE_{server}_PASSWORD_{principal.upper()}"
        if not self.get(key):
            raise KeyError(f"{key} is not set: no {server} password for principal {principal!r}")
        return principal, self[key]

    def amqp_uri(self, vhost: str | None = None, principal: str | None = None) -> str:
        user, password = self.amqp_login(principal)
        return "amqp://{}:{}@{}:{}/{}".format(
            quote(user, safe=""), quote(password, safe=""),
            self.server_host("rabbitmq"), self["EXCHANGE_RABBITMQ_PORT"],
            vhost or self["EXCHANGE_RABBITMQ_VHOST"])

    def postgres_login(self, principal: str | None = None) -> tuple[str, str]:
        """``(role, password)`` of ``principal`` (default: this process's,
        EXCHANGE_POSTGRES_PRINCIPAL, else the owner). A service's role is its
        name; its password is EXCHANGE_POSTGRES_PASSWORD_<NAME>."""
        return self._login("POSTGRES", principal or self.get("EXCHANGE_POSTGRES_PRINCIPAL")
                           or self["EXCHANGE_POSTGRES_USER"])

    def postgres_dsn(self, dbname: str | None = None, principal: str | None = None) -> str:
        user, password = self.postgres_login(principal)
        return "host={} port={} user={} password={} dbname={}".format(
            self.server_host("postgres"), self["EXCHANGE_POSTGRES_PORT"], user, password,
            dbname or self["EXCHANGE_POSTGRES_DB"])

    @property
    def keycloak_url(self) -> str:
        return f"http://{self.server_host('keycloak')}:{self['EXCHANGE_KEYCLOAK_PORT']}"

    @property
    def keycloak_issuer(self) -> str:
        return f"{self.keycloak_url}/realms/{self['EXCHANGE_KEYCLOAK_REALM']}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.server_host('gateway')}:{self['EXCHANGE_GATEWAY_PORT']}"

    def nameko_config(self, vhost: str | None = None, principal: str | None = None) -> dict:
        return {
            "AMQP_URI": self.amqp_uri(vhost, principal),
            "rpc_exchange": RPC_EXCHANGE,
            "serializer": "json",
            "max_workers": 10,
            "parent_calls_tracked": 10,
            # services/common/queues.py: classic, or quorum in a cluster.
            "RPC_QUEUE_TYPE": self.get("EXCHANGE_RABBITMQ_QUEUE_TYPE") or "classic",
        }


def service_names() -> list[str]:
    """The Nameko services of this repo: every services/<name>/service.py."""
    return sorted(p.parent.name for p in (REPO_ROOT / "services").glob("*/service.py"))


def amqp_principals() -> list[str]:
    """Every AMQP login but the operator's: the services, the gateway, the
    chain watcher."""
    return service_names() + list(OTHER_AMQP_PRINCIPALS)


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
