"""Probes for each dependency: one function per server, each returning a Probe.

Shared by the gateway's ``GET /health`` and by ``make status``/``make up`` so
both report the same thing. Every probe is bounded by a short timeout and never
raises: a failure is reported as ``up=False`` with the reason.
"""
from __future__ import annotations

import socket
import time
from dataclasses import asdict, dataclass

from services.common.config import Settings

PROBE_TIMEOUT = 2.0


@dataclass
class Probe:
    name: str
    up: bool
    latency_ms: float
    detail: str = ""
    required: bool = True

    def as_dict(self) -> dict:
        return asdict(self)


def timed(name: str, check, required: bool = True) -> Probe:
    started = time.perf_counter()
    try:
        detail = check() or ""
        up = True
    except Exception as exc:  # a probe reports, it never raises
        detail = f"{type(exc).__name__}: {exc}"[:300]
        up = False
    return Probe(name, up, round((time.perf_counter() - started) * 1000, 2), detail, required)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def probe_postgres(settings: Settings) -> Probe:
    def check():
        import psycopg
        with psycopg.connect(settings.postgres_dsn(), connect_timeout=PROBE_TIMEOUT) as conn:
            return conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]
    return timed("postgresql", check)


def probe_rabbitmq(settings: Settings) -> Probe:
    def check():
        from kombu import Connection
        with Connection(settings.amqp_uri(), connect_timeout=PROBE_TIMEOUT) as conn:
            conn.connect()
            props = conn.connection.server_properties
            return f"RabbitMQ {props.get('version', '?')}"
    return timed("rabbitmq", check)


def probe_memcached(settings: Settings) -> Probe:
    def check():
        from pymemcache.client.base import Client
        client = Client((settings.server_host("memcached"), settings.int("EXCHANGE_MEMCACHED_PORT")),
                        connect_timeout=PROBE_TIMEOUT, timeout=PROBE_TIMEOUT)
        try:
            return f"memcached {client.version().decode()}"
        finally:
            client.close()
    return timed("memcached", check)


def probe_cassandra(settings: Settings, session=None) -> Probe:
    def check():
        if session is not None:
            row = session.execute("SELECT release_version FROM system.local",
                                  timeout=PROBE_TIMEOUT).one()
            return f"Cassandra {row.release_version}"
        port = settings.int("EXCHANGE_CASSANDRA_PORT")
        host = settings.server_host("cassandra")
        if not port_open(host, port):
            raise ConnectionError(f"nothing listens on {host}:{port}")
        from services.common.cassandra import make_cluster
        cluster = make_cluster(settings)
        try:
            row = cluster.connect().execute("SELECT release_version FROM system.local",
                                            timeout=PROBE_TIMEOUT).one()
            return f"Cassandra {row.release_version}"
        finally:
            cluster.shutdown()
    return timed("cassandra", check)


def probe_keycloak(settings: Settings) -> Probe:
    def check():
        import requests
        url = f"{settings.keycloak_issuer}/.well-known/openid-configuration"
        response = requests.get(url, timeout=PROBE_TIMEOUT)
        response.raise_for_status()
        return f"realm {settings['EXCHANGE_KEYCLOAK_REALM']} issuer ok"
    return timed("keycloak", check)


DEPENDENCY_PROBES = {
    "postgresql": probe_postgres,
    "rabbitmq": probe_rabbitmq,
    "memcached": probe_memcached,
    "cassandra": probe_cassandra,
    "keycloak": probe_keycloak,
}


# What the exchange cannot take orders without. Anything else that is down
# only degrades it: Memcached (reads fall back to Cassandra), Cassandra and
# marketdata (charts and history), Keycloak (new logins; tokens already
# issued are verified locally against the cached keys), the registry (the
# services hold the catalogue locally).
ORDER_PATH = frozenset({"postgresql", "rabbitmq", "service:orders", "service:matching",
                        "service:wallets", "service:users"})

UP, DEGRADED, DOWN = "up", "degraded", "down"


def probe_all(settings: Settings, rpc_proxy_factory, services: list[str], spawn) -> list[Probe]:
    """Every dependency and service, probed concurrently with ``spawn``
    (eventlet's GreenPool.imap in the gateway, a thread pool elsewhere).
    A probe is ``required`` when it is on the order path."""
    checks = [lambda p=p: p(settings) for p in DEPENDENCY_PROBES.values()]
    checks += [lambda s=s: probe_service(rpc_proxy_factory, s) for s in services]
    probes = list(spawn(lambda check: check(), checks))
    for probe in probes:
        probe.required = probe.name in ORDER_PATH
    return probes


def verdict(probes: list[Probe]) -> tuple[str, int]:
    """The exchange's health and its HTTP status: ``down`` (503) when a part
    of the order path is down -- the exchange cannot take orders; ``degraded``
    (200) when anything else is down or a service reports itself degraded;
    ``up`` (200) otherwise. Pure."""
    if any(not p.up and p.required for p in probes):
        return DOWN, 503
    if any(not p.up or (p.name.startswith("service:") and p.detail == DEGRADED)
           for p in probes):
        return DEGRADED, 200
    return UP, 200


def probe_service(rpc_proxy_factory, service: str) -> Probe:
    """A Nameko service is up when its ``health`` RPC answers."""
    def check():
        with rpc_proxy_factory() as rpc:
            reply = getattr(rpc, service).health()
        return reply.get("status", "")
    return timed(f"service:{service}", check)
