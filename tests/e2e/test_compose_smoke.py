"""docker-compose.yml, end to end through its published ports.

Installs Docker if missing, starts a private dockerd, makes the base image,
builds every image, brings the stack up, and trades through it: `/health`
green, two traders sign up, deposit, place crossing orders; the trade settles
and shows in the candles. Then `down -v` and the daemon stops, leaving no
container, network, volume or daemon behind.

Long (a first build takes minutes): `make test` runs it (EXCHANGE_COMPOSE_TEST=1,
as CI does); a plain pytest run skips it, and so does `make test
EXCHANGE_COMPOSE_TEST=0`.
"""
import os
import time
import uuid
from decimal import Decimal

import psycopg
import pytest
import requests
import yaml
from nameko.standalone.rpc import ClusterRpcProxy

from services.common.config import RPC_EXCHANGE, load_settings, service_names
from stack import compose
from tests.integration.common.test_rabbitmq_permissions import REFUSED, attempt, publish

needs_compose = [
    pytest.mark.skipif(os.environ.get("EXCHANGE_COMPOSE_TEST") != "1",
                       reason="the compose stack test runs with "
                              "EXCHANGE_COMPOSE_TEST=1"),
    pytest.mark.slow,
    # A first build on a fresh machine fetches every package and server.
    pytest.mark.timeout(3000),
]

MARKET = "BTC-USDT"
PASSWORD = "compose-smoke-password-1"


def published(daemon, service: str, port_key: str) -> tuple[str, int]:
    """The host address compose published a container port on."""
    port = load_settings()[port_key]
    address = daemon.compose("port", service, port, capture=True).strip()
    host, _, host_port = address.rpartition(":")
    return host, int(host_port)


def executed_run_steps(build_output: str) -> list[str]:
    """The RUN steps a classic `docker build` executed rather than took from its cache."""
    executed, step = [], ""
    for line in build_output.splitlines():
        if line.startswith("Step "):
            step = line
        elif line.strip().startswith("---> Running in") and " : RUN " in step:
            executed.append(step[:120])
    return executed


def wait_until(what: str, check, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


@pytest.fixture(scope="module")
def stack():
    settings = load_settings()
    compose.install()
    daemon = compose.Daemon(settings)
    times = {}
    driver = daemon.start()
    try:
        compose.base_image(daemon)
        started = time.monotonic()
        daemon.compose("build")
        times["build"] = time.monotonic() - started
        started = time.monotonic()
        again = daemon.compose("build")
        times["cached build"] = time.monotonic() - started
        # No source changed: no RUN step of any image runs again (the layer cache).
        assert not executed_run_steps(again), executed_run_steps(again)
        started = time.monotonic()
        daemon.compose("up", "-d")
        times["up"] = time.monotonic() - started
        compose.say(f"storage {driver}; " + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()))
        yield daemon
    finally:
        try:
            daemon.compose("down", "-v", "--remove-orphans", timeout=300)
        finally:
            left = {
                "containers": daemon.docker("ps", "-aq", check=False).split(),
                "networks": [n for n in daemon.docker("network", "ls", "--format", "{{.Name}}",
                                                      check=False).split()
                             if n not in ("bridge", "host", "none")],
                "volumes": daemon.docker("volume", "ls", "-q", check=False).split(),
            }
            daemon.stop()
            left["processes"] = daemon.leftovers()
            left["mounts"] = daemon.mounts()
            assert not any(left.values()), f"the compose stack left behind {left}"
            assert daemon.pid() is None


def test_compose_runs_every_service_of_the_repo():
    """A service added under services/ must be added to docker-compose.yml too."""
    with open(compose.COMPOSE_FILE) as f:
        defined = set(yaml.safe_load(f)["services"])
    assert set(service_names()) <= defined
    assert {"postgresql", "rabbitmq", "memcached", "cassandra", "keycloak", "gateway"} <= defined


@needs_compose[0]
@needs_compose[1]
@needs_compose[2]
def test_a_trade_through_the_compose_stack(stack):
    host, port = published(stack, "gateway", "EXCHANGE_GATEWAY_PORT")
    assert host == "127.0.0.1"

    def gateway_answers():
        # `up -d` returns once the gateway's container started, not its server.
        try:
            return requests.get(f"http://{host}:{port}/health", timeout=15)
        except requests.ConnectionError:
            return None

    response = wait_until("the gateway answers /health", gateway_answers, 180, interval=2)
    assert response.status_code == 200, response.text
    components = {c["name"]: c for c in response.json()["components"]}
    for name in ("postgresql", "rabbitmq", "memcached", "cassandra", "keycloak",
                 *(f"service:{s}" for s in service_names())):
        assert components[name]["up"], components[name]

    amqp_host, amqp_port = published(stack, "rabbitmq", "EXCHANGE_RABBITMQ_PORT")
    settings = load_settings().with_overrides(EXCHANGE_RABBITMQ_HOST=amqp_host,
                                              EXCHANGE_RABBITMQ_PORT=str(amqp_port))
    tag = uuid.uuid4().hex[:8]
    with ClusterRpcProxy(settings.nameko_config(), timeout=60) as rpc:
        traders = {}
        for role, asset, amount in (("buyer", "USDT", "1000"), ("seller", "BTC", "1")):
            username = f"smoke-{role}-{tag}"
            signup = rpc.users.sign_up({
                "username": username, "email": f"{username}@compose.invalid",
                "password": PASSWORD, "first_name": "Smoke", "last_name": role.title()})
            user = traders[role] = signup["user_id"]
            address = rpc.wallets.deposit_address(user, asset)["address"]
            txid = uuid.uuid4().hex * 2
            rpc.wallets.credit_deposit(asset, address, amount,
                                       txid if asset == "BTC" else "0x" + txid, 1000)
            balance = rpc.wallets.balance(user, asset)
            assert Decimal(balance["available"]) == Decimal(amount)

        # Inside the seeded book's spread (29990 / 30010): the two orders meet each other.
        rpc.orders.place_order(traders["buyer"], MARKET, "buy", "limit",
                               quantity="0.01", price="30005")
        rpc.orders.place_order(traders["seller"], MARKET, "sell", "limit",
                               quantity="0.01", price="30005")

        def settled():
            buyer = rpc.wallets.balances(traders["buyer"])["balances"]
            seller = rpc.wallets.balances(traders["seller"])["balances"]
            got_btc = Decimal(buyer["BTC"]["available"]) > 0
            got_usdt = Decimal(seller.get("USDT", {"available": "0"})["available"]) > 0
            return (buyer, seller) if got_btc and got_usdt else None

        buyer, seller = wait_until("the trade settles in both wallets", settled, 60)
        assert Decimal(buyer["BTC"]["available"]) <= Decimal("0.01")
        assert Decimal(buyer["USDT"]["available"]) <= Decimal("1000") - Decimal("300.05")
        assert Decimal(seller["BTC"]["available"]) + Decimal(seller["BTC"]["locked"]) \
            <= Decimal("0.99")
        assert Decimal(seller["USDT"]["available"]) <= Decimal("300.05")

        def candle():
            reply = rpc.marketdata.get_candles(MARKET, "1m", limit=5)
            rows = [dict(zip(reply["columns"], row)) for row in reply["candles"]]
            return [r for r in rows if Decimal(str(r["volume"])) >= Decimal("0.01")
                    and Decimal(str(r["close"])) == Decimal("30005")]

        rows = wait_until("the trade shows in the 1m candles", candle, 60)
        assert int(rows[-1]["trade_count"]) >= 1


@needs_compose[0]
@needs_compose[1]
@needs_compose[2]
def test_every_compose_process_logs_in_as_itself(stack):
    """Least privilege as under `make up` (docs/security.md): the services hold
    PostgreSQL connections as their own roles, and the compose broker has
    every principal's user and permissions (the rabbitmq-definitions stage of
    docker/Dockerfile): marketdata's login may not send a user verb, the
    gateway's may."""
    pg_host, pg_port = published(stack, "postgresql", "EXCHANGE_POSTGRES_PORT")
    amqp_host, amqp_port = published(stack, "rabbitmq", "EXCHANGE_RABBITMQ_PORT")
    settings = load_settings().with_overrides(
        EXCHANGE_POSTGRES_HOST=pg_host, EXCHANGE_POSTGRES_PORT=str(pg_port),
        EXCHANGE_RABBITMQ_HOST=amqp_host, EXCHANGE_RABBITMQ_PORT=str(amqp_port))
    operator = settings["EXCHANGE_POSTGRES_USER"]
    with psycopg.connect(settings.postgres_dsn(), connect_timeout=10) as conn:
        roles = {row[0] for row in conn.execute(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = %s",
            (settings["EXCHANGE_POSTGRES_DB"],))}
    assert roles - {operator} <= set(service_names()) | {"gateway"}, roles
    assert {"orders", "wallets", "matching"} <= roles, roles

    request = {"args": [], "kwargs": {}}
    refused = attempt(settings.amqp_uri(principal="marketdata"),
                      publish(RPC_EXCHANGE, "orders.place_order", request))
    assert refused and REFUSED in refused, refused
    assert attempt(settings.amqp_uri(principal="gateway"),
                   publish(RPC_EXCHANGE, "orders.health", request)) is None
