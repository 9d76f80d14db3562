"""The three-zones deployment as its clients and operators see it, for the
drills: traders signed up over RPC, API keys and orders through the edge
HAProxy (127.0.0.1:18400), a steady order load that records every
acknowledgement, and each zone's supervisord, Patroni and RabbitMQ.

Everything here talks to 127.0.0.1 or to the zones' own addresses
(169.254.100.11-13, namespaces made by scripts/zones.sh).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode

import eventlet
import requests
from nameko.standalone.rpc import ClusterRpcProxy

from services.common.config import REPO_ROOT, load_settings

# Set by `scripts/zones.sh drill` (CI) after it deployed the zones: the drill
# fails instead of skipping when the deployment is not there or not healthy.
REQUIRED = os.environ.get("EXCHANGE_ZONES_DEPLOYED") == "1"
ADDRESSES = {"zone-a": "169.254.100.11", "zone-b": "169.254.100.12", "zone-c": "169.254.100.13"}
EDGE_URL = "http://127.0.0.1:18400"
SCRIPT = REPO_ROOT / "scripts" / "zones.sh"
SUPERVISORCTL = REPO_ROOT / ".venv" / "bin" / "supervisorctl"
PATRONI_PORT = 18008
MATCHING_METRICS_PORT = 19202
# Tokens name the issuer the services check: the zones' HAProxy address.
KEYCLOAK_HOST_HEADER = "127.0.0.1:18080"
PASSWORD = "zones-Drill-password-local-dev-only-7"
HTTP_TIMEOUT = 20
MARKET = "BTC-USDT"
PRICE = "30000"
QUANTITY = "0.001"


def settings_of(zone: str):
    """Settings of a client beside ``zone``'s servers (its RabbitMQ node)."""
    return load_settings({"EXCHANGE_BIND_HOST": ADDRESSES[zone],
                          "EXCHANGE_RABBITMQ_QUEUE_TYPE": "quorum"})


def zones(*args: str) -> None:
    subprocess.run(["bash", str(SCRIPT), *args], check=True, capture_output=True, timeout=120)


def edge_health() -> int | None:
    try:
        return requests.get(f"{EDGE_URL}/health", timeout=5).status_code
    except requests.RequestException:
        return None


def deployed() -> bool:
    return all((REPO_ROOT / "run" / "hosts" / z / "supervisor" / "supervisord.conf").exists()
               for z in ADDRESSES) and edge_health() == 200


def supervisor(zone: str, *args: str) -> str:
    conf = REPO_ROOT / "run" / "hosts" / zone / "supervisor" / "supervisord.conf"
    result = subprocess.run(["ip", "netns", "exec", zone, str(SUPERVISORCTL), "-c", str(conf), *args],
                            capture_output=True, text=True, timeout=120)
    return result.stdout


def programs(zone: str) -> dict[str, tuple[str, int | None]]:
    """name -> (state, pid) of every program of the zone's supervisord."""
    found = {}
    for line in supervisor(zone, "status").splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        pid = int(parts[3].rstrip(",")) if len(parts) > 3 and parts[2] == "pid" else None
        found[parts[0]] = (parts[1], pid)
    return found


def all_running(zone: str) -> bool:
    found = programs(zone)
    return bool(found) and all(state == "RUNNING" for state, _ in found.values())


def patroni_leader(skip: str | None = None) -> str | None:
    for zone, address in ADDRESSES.items():
        if zone == skip:
            continue
        try:
            members = requests.get(f"http://{address}:{PATRONI_PORT}/cluster", timeout=2).json()["members"]
            return next((m["name"] for m in members if m["role"] == "leader"), None)
        except (requests.RequestException, ValueError, KeyError):
            continue
    return None


def patroni_healthy() -> bool:
    for address in ADDRESSES.values():
        try:
            members = requests.get(f"http://{address}:{PATRONI_PORT}/cluster", timeout=2).json()["members"]
        except (requests.RequestException, ValueError, KeyError):
            continue
        return len(members) == 3 and {m["role"] for m in members} >= {"leader", "sync_standby"} \
            and all(m["state"] in ("running", "streaming") for m in members)
    return False


def active_engine_zones(skip: str | None = None) -> list[str]:
    """The zones whose matching process runs an active engine (``skip``: a
    zone not asked, e.g. one cut off)."""
    active = []
    for zone, address in ADDRESSES.items():
        if zone == skip:
            continue
        try:
            text = requests.get(f"http://{address}:{MATCHING_METRICS_PORT}/metrics", timeout=2).text
        except requests.RequestException:
            continue
        if any(line.startswith("exchange_engine_active") and not line.rstrip().endswith(" 0.0")
               for line in text.splitlines()):
            active.append(zone)
    return active


def queue_leaders(zone: str = "zone-a") -> dict[str, str]:
    """Quorum queue -> the zone of its leader (rabbitmqctl on ``zone``'s node)."""
    from stack import servers
    settings = load_settings({"EXCHANGE_BIND_HOST": ADDRESSES[zone],
                              "EXCHANGE_RUN_DIR": str(REPO_ROOT / "run" / "hosts" / zone),
                              "EXCHANGE_RABBITMQ_NODENAME": f"exchange@{ADDRESSES[zone]}"})
    by_address = {a: z for z, a in ADDRESSES.items()}
    try:
        listing = servers.rabbitmqctl(settings, "list_queues", "-p", settings["EXCHANGE_RABBITMQ_VHOST"],
                                      "name", "type", "leader", "--no-table-headers")
    except Exception:  # noqa: BLE001 - a diagnostic only
        return {}
    leaders = {}
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "quorum":
            leaders[parts[0]] = by_address.get(parts[2].partition("@")[2], parts[2])
    return leaders


def amqp_zone() -> str:
    """The first zone whose RabbitMQ node takes connections (after a drill a
    healed zone's node may still be booting)."""
    port = int(load_settings()["EXCHANGE_RABBITMQ_PORT"])
    for zone, address in ADDRESSES.items():
        try:
            socket.create_connection((address, port), timeout=2).close()
            return zone
        except OSError:
            continue
    return "zone-a"


def rpc(zone: str | None = None, timeout: float = 60) -> ClusterRpcProxy:
    return ClusterRpcProxy(settings_of(zone or amqp_zone()).nameko_config(), timeout=timeout)


def token(username: str) -> str:
    """A trader's access token from a Keycloak node, issued for the address
    the services know Keycloak by (their zone's HAProxy)."""
    settings = load_settings()
    problems = []
    for zone in ("zone-a", "zone-b"):
        try:
            reply = requests.post(
                f"http://{ADDRESSES[zone]}:18080/realms/{settings['EXCHANGE_KEYCLOAK_REALM']}"
                "/protocol/openid-connect/token",
                data={"grant_type": "password", "username": username, "password": PASSWORD,
                      "client_id": settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_ID"],
                      "client_secret": settings["EXCHANGE_KEYCLOAK_BACKEND_CLIENT_SECRET"],
                      "scope": "openid"},
                headers={"Host": KEYCLOAK_HOST_HEADER}, timeout=HTTP_TIMEOUT)
            if reply.status_code == 200:
                return reply.json()["access_token"]
            problems.append(f"{zone}: HTTP {reply.status_code} {reply.text[:200]}")
        except requests.RequestException as problem:
            problems.append(f"{zone}: {problem}")
    raise AssertionError(f"no token for {username}: {problems}")


@dataclass
class Trader:
    username: str
    user_id: str
    api_key: str
    secret: str


def sign_up(services) -> tuple[str, dict]:
    """A new user. On the loaded machine a sign-up may find Keycloak busy
    (IDENTITY_UNAVAILABLE) or, delivered a second time after its first
    answer was lost, its own e-mail taken: a fresh name, a bounded retry."""
    problems = []
    for _ in range(5):
        username = f"zd-{uuid.uuid4().hex[:10]}"
        try:
            return username, services.users.sign_up({
                "username": username, "email": f"{username}@example.test", "password": PASSWORD,
                "first_name": "Zone", "last_name": "Drill"})
        except Exception as problem:  # noqa: BLE001 - a RemoteError with the service's code
            if "IDENTITY_UNAVAILABLE" not in str(problem) and "EMAIL_TAKEN" not in str(problem):
                raise
            problems.append(str(problem)[:120])
            time.sleep(10)
    raise AssertionError(f"no sign-up: {problems}")


def new_trader(funds: dict[str, str]) -> Trader:
    with rpc() as services:
        username, signup = sign_up(services)
        for asset, amount in funds.items():
            address = services.wallets.deposit_address(signup["user_id"], asset)["address"]
            txid = secrets.token_hex(32) if asset == "BTC" else "0x" + secrets.token_hex(32)
            services.wallets.credit_deposit(asset, address, amount, txid, 100)
    reply = requests.post(f"{EDGE_URL}/api/v1/api-keys", json={"label": "zone drill", "permissions": ["read", "trade"]},
                          headers={"Authorization": f"Bearer {token(username)}"}, timeout=HTTP_TIMEOUT)
    assert reply.status_code == 201, reply.text
    created = reply.json()
    return Trader(username, signup["user_id"], created["api_key"], created["secret"])


def signed(trader: Trader, method: str, path: str, params: dict | None = None,
           body: dict | None = None) -> requests.Response:
    query = urlencode({**(params or {}), "timestamp": int(time.time() * 1000)})
    raw = "" if body is None else json.dumps(body, separators=(",", ":"))
    signature = hmac.new(trader.secret.encode(), (query + raw).encode(), hashlib.sha256).hexdigest()
    headers = {"X-MBX-APIKEY": trader.api_key}
    if body is not None:
        headers["Content-Type"] = "application/json"
    return requests.request(method, f"{EDGE_URL}{path}?{query}&signature={signature}",
                            data=raw or None, headers=headers, timeout=HTTP_TIMEOUT)


@dataclass
class OrderLoad:
    """Pairs of crossing limit orders (a buy, then a sell at the same price)
    from two traders, sent one after another through the edge HAProxy.

    An order is acknowledged by a 201, or by DUPLICATE_CLIENT_ORDER_ID on a
    retry (the first try was placed, its answer lost). Anything else that is
    not a coded 4xx (connection reset, timeout, 5xx, 429) is retried with the
    same client order id for up to ``retry_for_s``; a coded 4xx is a refusal
    and is recorded as one. An order still unanswered after ``retry_for_s``
    is *given up* on: never acknowledged, so its outcome is the client's to
    find out (placed or not; ``stored_orders`` tells). The CI drill of
    2026-12-05 reported one such order as "lost": it had been placed (its
    answer was cut off when the edge took its gateway out) and was in the
    database after the failover; no acknowledged order was missing."""
    buyer: Trader
    seller: Trader
    retry_for_s: float = 90.0
    acks: list[tuple[float, str, int | None]] = field(default_factory=list)
    retries: list[tuple[float, str]] = field(default_factory=list)
    refusals: list[tuple[float, str, str]] = field(default_factory=list)
    given_up: list[str] = field(default_factory=list)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _stop: bool = False
    stopped_at: float | None = None
    _thread: object = None

    def place(self, trader: Trader, side: str, client_order_id: str) -> None:
        body = {"market": MARKET, "side": side, "type": "limit", "price": PRICE,
                "quantity": QUANTITY, "time_in_force": "GTC", "client_order_id": client_order_id}
        deadline = time.monotonic() + self.retry_for_s
        while time.monotonic() < deadline:
            try:
                reply = signed(trader, "POST", "/api/v1/orders", body=body)
            except requests.RequestException as problem:
                self.retries.append((time.monotonic(), f"{type(problem).__name__}"))
                time.sleep(0.2)
                continue
            if reply.status_code == 201:
                self.acks.append((time.monotonic(), client_order_id, reply.json()["order_id"]))
                return
            code = ""
            try:
                code = reply.json().get("error", {}).get("code", "")
            except ValueError:
                pass
            if code == "DUPLICATE_CLIENT_ORDER_ID":
                self.acks.append((time.monotonic(), client_order_id, None))
                return
            # TIMESTAMP_STALE: the signed request waited in the system past
            # its recvWindow (a failover) and was refused with nothing done;
            # a client signs again and retries, as for a timeout.
            if reply.status_code >= 500 or reply.status_code == 429 or code in (
                    "UNAVAILABLE", "UPSTREAM_TIMEOUT", "TIMEOUT", "REQUEST_EXPIRED", "TIMESTAMP_STALE"):
                self.retries.append((time.monotonic(), f"HTTP {reply.status_code} {code}"))
                time.sleep(0.2)
                continue
            self.refusals.append((time.monotonic(), client_order_id, f"HTTP {reply.status_code} {reply.text[:200]}"))
            return
        self.given_up.append(client_order_id)

    def _run(self) -> None:
        n = 0
        while not self._stop:
            n += 1
            self.place(self.buyer, "buy", f"zd-{self.run_id}-{n}-b")
            self.place(self.seller, "sell", f"zd-{self.run_id}-{n}-s")

    def start(self) -> "OrderLoad":
        self._thread = eventlet.spawn(self._run)
        return self

    def stop(self, timeout_s: float = 200) -> None:
        self._stop = True
        with eventlet.Timeout(timeout_s):
            self._thread.wait()
        self.stopped_at = time.monotonic()

    def longest_gap(self, since: float, until: float) -> float:
        """The longest stretch without an acknowledgement that overlaps
        ``since``..``until``: from the last one before ``since`` (or
        ``since``) to the first one after ``until`` (or the load's end)."""
        times = sorted(t for t, _, _ in self.acks)
        before = [t for t in times if t < since][-1:] or [since]
        after = [t for t in times if t > until][:1] or [self.stopped_at or time.monotonic()]
        window = before + [t for t in times if since <= t <= until] + after
        return max(b - a for a, b in zip(window, window[1:]))

    def acks_after(self, moment: float) -> int:
        return sum(t > moment for t, _, _ in self.acks)


def haproxy_states(host: str, backend: str) -> dict[str, str]:
    """server -> status (UP, DOWN, NOLB, MAINT...) of one backend of a host's
    HAProxy, read on its runtime socket (a file: reachable from outside the
    host's namespace)."""
    path = REPO_ROOT / "run" / "hosts" / host / "haproxy" / "admin.sock"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(2)
            conn.connect(str(path))
            conn.sendall(b"show stat\n")
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
    except OSError:
        return {}
    states = {}
    for line in data.decode(errors="replace").splitlines():
        fields = line.split(",")
        if len(fields) > 17 and fields[0] == backend and fields[1] not in ("FRONTEND", "BACKEND"):
            states[fields[1]] = fields[17]
    return states


@dataclass
class Timeline:
    """What a drill changes, sampled every ``step`` s while it runs: the
    PostgreSQL leader, the zones with an active engine, the edge's view of
    the gateways and ``observer``'s HAProxy view of PostgreSQL. Each change
    is kept with its time, to say where the seconds of a failover go.
    ``cut``: the zone cut off, not asked (its answers would only time out)."""
    observer: str
    cut: str | None = None
    step: float = 0.5
    events: list[tuple[float, str, object]] = field(default_factory=list)
    _stop: bool = False
    _thread: object = None

    def _sample(self) -> dict[str, object]:
        return {"PostgreSQL leader": patroni_leader(self.cut),
                "active engines": tuple(active_engine_zones(self.cut)),
                "edge gateways up": tuple(sorted(s for s, v in haproxy_states("edge-lb", "gateways").items()
                                                 if v == "UP")),
                f"{self.observer}'s HAProxy PostgreSQL up": tuple(sorted(
                    s for s, v in haproxy_states(self.observer, "postgres").items() if v == "UP"))}

    def _run(self) -> None:
        last: dict[str, object] = {}
        while not self._stop:
            started = time.monotonic()
            for name, value in self._sample().items():
                if last.get(name, ()) != value:
                    self.events.append((time.monotonic(), name, value))
                    last[name] = value
            eventlet.sleep(max(0.0, self.step - (time.monotonic() - started)))

    def start(self) -> "Timeline":
        self._thread = eventlet.spawn(self._run)
        return self

    def stop(self, timeout_s: float = 30) -> None:
        self._stop = True
        if self._thread is not None:
            with eventlet.Timeout(timeout_s, False):
                self._thread.wait()

    def report(self, since: float, load: "OrderLoad") -> str:
        lines = [f"  {t - since:+7.1f} s  {name}: {value}" for t, name, value in self.events]
        before = [t for t, _, _ in load.acks if t <= since]
        if before:
            lines.append(f"  {max(before) - since:+7.1f} s  last order acknowledged before the cut")
        after = sorted(t for t, _, _ in load.acks if t > since)
        if after:
            lines.append(f"  {after[0] - since:+7.1f} s  first order acknowledged after the cut")
        return "\n".join(sorted(lines, key=lambda line: float(line.split()[0])))


# What a service raises while its PostgreSQL is failed over or rewound, or
# its pool cannot reach the new leader yet (session 8's run 3: wallets.audit()
# answered AdminShutdown while the healed zone's server was rewound): asked
# again. Anything else -- a coded error, a bug -- is raised at once, and the
# audit's findings are its answer, never an error, so no retry hides one.
TRANSIENT_REMOTE_ERRORS = frozenset({
    "AdminShutdown", "CannotConnectNow", "OperationalError", "InterfaceError",
    "ConnectionFailure", "PoolTimeout", "ReadOnlySqlTransaction"})
AUDIT_ATTEMPTS = 8
AUDIT_PAUSE_S = 5.0


def retrying_transient(call, attempts: int = AUDIT_ATTEMPTS, pause_s: float = AUDIT_PAUSE_S):
    """``call()``'s answer, asked again (at most ``attempts`` times in all,
    ``pause_s`` apart) while it fails with a transient error: a RemoteError
    of TRANSIENT_REMOTE_ERRORS, or no connection to RabbitMQ (OSError). After
    the last attempt, an AssertionError listing every failure."""
    from nameko.exceptions import RemoteError
    failures = []
    for attempt in range(attempts):
        try:
            return call()
        except RemoteError as problem:
            if problem.exc_type not in TRANSIENT_REMOTE_ERRORS:
                raise
            failures.append(f"{problem.exc_type}: {problem.value}"[:200])
        except OSError as problem:
            failures.append(f"{type(problem).__name__}: {problem}"[:200])
        if attempt < attempts - 1:
            time.sleep(pause_s)
    raise AssertionError(f"still failing after {attempts} attempts, each transient: {failures}")


def audit() -> list:
    """wallets.audit()'s findings, through a failover's transient errors."""
    def ask():
        with rpc() as services:
            return services.wallets.audit()
    return retrying_transient(ask)


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(check, seconds: float, step: float = 1.0):
    """``check()`` until it returns something true, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    return check()


def order_of(trader: Trader, client_order_id: str) -> dict | None:
    with rpc() as services:
        try:
            return services.orders.get_order(trader.user_id, client_order_id=client_order_id)
        except Exception:  # noqa: BLE001 - UNKNOWN_ORDER: not there
            return None


def stored_orders(run_id: str, query=None) -> dict[str, list[str]]:
    """client order id -> the order ids stored under it, for one load's run.
    ``query``: SQL -> psql's lines (``psql`` on zone-a unless given)."""
    query = query or psql
    stored: dict[str, list[str]] = {}
    for line in query(f"SELECT client_order_id, order_id FROM orders WHERE client_order_id LIKE 'zd-{run_id}-%'"):
        client_order_id, _, order_id = line.partition("|")
        stored.setdefault(client_order_id, []).append(order_id)
    return stored


def acknowledged_not_kept_once(load: OrderLoad, query=None) -> list[str]:
    """Every acknowledged order kept exactly once with its hold, checked in
    the database; what is wrong, one line each. Not counts per key: the
    unique (user_id, client_order_id) and the ledger's unique idempotency key
    make each such count 1 whatever happens. So, as sets:

    * each acknowledged client order id has its order (none: lost), the one
      the 201 named;
    * the traders' orders are exactly those acknowledged or given up on: an
      order placed twice is one more order of these users, under whatever
      client order id (one of another run's load, ``zd-<run>-``, is that
      run's);
    * these orders' hold keys are exactly ``hold:order:<id>`` of each (one
      missing: no hold). A hold moved twice cannot share its key; money
      moved twice is what ``audit()`` (hold_without_order, conservation)
      finds.

    ``query``: SQL -> psql's lines (``psql`` on zone-a unless given)."""
    query = query or psql
    users = ",".join(f"'{trader.user_id}'" for trader in (load.buyer, load.seller))
    mine, other_runs = f"zd-{load.run_id}-", "zd-"
    orders: dict[str, list[str]] = {}
    extra = []
    for line in query(f"SELECT order_id, coalesce(client_order_id, '') FROM orders "
                      f"WHERE user_id IN ({users}) ORDER BY order_id"):
        order_id, _, client_order_id = line.partition("|")
        if client_order_id.startswith(mine):
            orders.setdefault(client_order_id, []).append(order_id)
        elif not client_order_id.startswith(other_runs):
            extra.append(f"order {order_id} ({client_order_id or 'no client order id'}): "
                         "stored, never acknowledged")
    wrong = []
    acknowledged = set()
    for _, client_order_id, order_id in load.acks:
        acknowledged.add(client_order_id)
        found = orders.get(client_order_id, [])
        if len(found) != 1:
            wrong.append(f"{client_order_id}: stored {len(found)} times")
        elif order_id is not None and str(order_id) != found[0]:
            wrong.append(f"{client_order_id}: acknowledged as order {order_id}, stored as {found[0]}")
    given_up = set(load.given_up)
    for client_order_id, found in sorted(orders.items()):
        if client_order_id not in acknowledged | given_up:
            extra += [f"order {i} ({client_order_id}): stored, never acknowledged" for i in found]
    ids = [i for found in orders.values() for i in found]
    expected = {f"hold:order:{int(i)}" for i in ids}
    held = set(holds_of(ids, query))
    wrong += extra
    wrong += [f"order {key.removeprefix('hold:order:')}: no hold" for key in sorted(expected - held)]
    return wrong


def holds_of(order_ids: list[str], query=None) -> list[str]:
    """The hold keys (wallets' idempotency key ``hold:order:<id>``) the
    ledger has for these orders."""
    if not order_ids:
        return []
    keys = ",".join(f"'hold:order:{int(i)}'" for i in order_ids)
    return (query or psql)(f"SELECT idempotency_key FROM wallets.transactions "
                           f"WHERE idempotency_key IN ({keys})")


def given_up_outcomes(load: OrderLoad) -> list[str]:
    """What became of each order the load gave up on (for the report)."""
    stored = stored_orders(load.run_id)
    return [f"{coid}: {'placed' if stored.get(coid) else 'not placed'}" for coid in load.given_up]


def settlement_differences(query=None, market: str = MARKET) -> list[str]:
    """The market's trades executed (orders' fills) and settled (the
    ledger's trade transactions, key ``trade:<market>:<trade id>``) as sets:
    what is in one and not the other, one line each; empty once settlement
    has caught up. Not counts: a trade settled twice under its one key
    cannot be, and two sets of equal size may still differ (one lost, one
    settled that was never executed). Money moved twice is what ``audit()``
    finds. ``query``: SQL -> psql's lines (``psql`` on zone-a unless given)."""
    query = query or psql
    prefix = f"trade:{market}:"
    executed = set(query(f"SELECT DISTINCT trade_id FROM order_fills WHERE market = '{market}'"))
    settled = {key.removeprefix(prefix) for key in query(
        "SELECT idempotency_key FROM wallets.transactions WHERE type = 'trade' "
        f"AND starts_with(idempotency_key, '{prefix}')")}
    return ([f"trade {t}: executed, not settled" for t in sorted(executed - settled)]
            + [f"trade {t}: settled, never executed" for t in sorted(settled - executed)])


def psql(sql: str, zone: str = "zone-a") -> list[str]:
    settings = load_settings()
    result = subprocess.run(
        ["ip", "netns", "exec", zone, "psql", "-Atq",
         f"host=127.0.0.1 port={settings['EXCHANGE_POSTGRES_PORT']} user={settings['EXCHANGE_POSTGRES_USER']} "
         f"password={settings['EXCHANGE_POSTGRES_PASSWORD']} dbname={settings['EXCHANGE_POSTGRES_DB']} "
         "connect_timeout=5", "-c", sql], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line]
