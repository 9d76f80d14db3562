"""Order flow benchmark: orders accepted per second through `orders.place_order`
with everything persisted, against an empty Nameko RPC round trip with the same
number of service processes and client concurrency, plus fill-to-settlement
latency and engine failover time. Prints its figures.

Needs the stack's servers (`make up`). Runs its own service processes in a
private namespace (database exchange_bench, vhost exchange_bench):
2 x orders, 2 x matching (active + standby), 1 x wallets with settlement, and
2 x the empty echo service.

    .venv/bin/python bench/orders_bench.py [--orders 3000] [--clients 32]
"""
from __future__ import annotations

import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import psycopg  # noqa: E402
import yaml  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import common  # noqa: E402
from bench.common import cpu_per_call, percentile  # noqa: E402
from services.common import postgres  # noqa: E402,F401  (eventlet-cooperative psycopg)
from services.common.config import load_settings  # noqa: E402
from services.common.migrations import apply_sql_migrations, service_sql_migrations  # noqa: E402
from stack import seed, servers  # noqa: E402
from stack.proc import Process  # noqa: E402

NAMESPACE = "exchange_bench"
MARKET = "BTC-USDT"


def prepare(settings):
    with servers.pg_admin_connect(settings) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {NAMESPACE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {NAMESPACE} OWNER {settings['EXCHANGE_POSTGRES_USER']}")
    with psycopg.connect(settings.postgres_dsn(NAMESPACE)) as conn:
        apply_sql_migrations(conn, service_sql_migrations())
    for args in (("delete_vhost", NAMESPACE), ("add_vhost", NAMESPACE),
                 ("set_permissions", "-p", NAMESPACE, settings["EXCHANGE_RABBITMQ_USER"],
                  ".*", ".*", ".*")):
        try:
            servers.rabbitmqctl(settings, *args)
        except servers.StackError:
            if args[0] != "delete_vhost":
                raise


def start_processes(settings, config):
    run = settings.run_dir / "bench"
    run.mkdir(parents=True, exist_ok=True)
    config_file = run / "nameko.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = {**settings.values, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    modules = {"orders-a": "services.orders.service", "orders-b": "services.orders.service",
               "matching-a": "services.matching.service", "matching-b": "services.matching.service",
               "wallets": "services.wallets.service",
               "echo-a": "bench.echo_service", "echo-b": "bench.echo_service"}
    procs = {}
    for name, module in modules.items():
        procs[name] = Process(name, [sys.executable, "-m", "nameko", "run", "--config",
                                     str(config_file), module], run / f"{name}.log",
                              run / f"{name}.pid", env=env, cwd=REPO)
        procs[name].start()
    return procs


def cpu_snapshot(procs) -> dict:
    """CPU seconds used so far, by role (bench.common.cpu_snapshot): our
    service processes by kind and this process (the clients)."""
    roles: dict = {"clients (this process)": [os.getpid()]}
    for name, proc in procs.items():
        role = name.rsplit("-", 1)[0] if name[-2:] in ("-a", "-b") else name
        roles.setdefault(role, []).append(proc.running_pid())
    return common.cpu_snapshot(roles)


def fund_users(rpc, count):
    users = []
    for _ in range(count):
        user = f"bench-{uuid.uuid4().hex[:10]}"
        rpc.wallets.open_accounts(user)
        for asset, amount in (("BTC", "1000"), ("USDT", "100000000")):
            address = rpc.wallets.deposit_address(user, asset)["address"]
            txid = uuid.uuid4().hex * 2
            rpc.wallets.credit_deposit(asset, address, amount,
                                       txid if asset == "BTC" else "0x" + txid, 1000)
        users.append(user)
    return users


def run_clients(config, clients, total, call):
    """``total`` calls spread over ``clients`` greenthreads; returns (seconds, latencies)."""
    latencies, errors = [], []

    def worker(n):
        with ClusterRpcProxy(config, timeout=120) as rpc:
            for i in range(n, total, clients):
                started = time.perf_counter()
                try:
                    call(rpc, i)
                except Exception as exc:  # a refused call makes the figures meaningless
                    errors.append(exc)
                    continue
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    pool = eventlet.GreenPool(clients)
    for n in range(clients):
        pool.spawn(worker, n)
    pool.waitall()
    if errors:
        raise SystemExit(f"{len(errors)} of {total} calls failed; the first: {errors[0]!r}")
    return time.perf_counter() - started, latencies


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--users", type=int, default=20)
    args = parser.parse_args()
    settings = load_settings()
    prepare(settings)
    config = {**settings.nameko_config(NAMESPACE), "POSTGRES_DB": NAMESPACE, "max_workers": 40,
              "POSTGRES_POOL_MAX": 40}
    procs = start_processes(settings, config)
    try:
        # The demo admin's token: set_reference_price is an admin verb.
        with ClusterRpcProxy(config, timeout=120,
                             context_data={"access_token": seed.admin_token(settings)}) as rpc:
            deadline = time.monotonic() + 60
            while True:
                try:
                    rpc.orders.health(), rpc.matching.health(), rpc.wallets.health()
                    rpc.bench_echo.echo(1)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            users = fund_users(rpc, args.users)
            rpc.matching.set_reference_price(MARKET, "100")

        # Warm-up, untimed.
        run_clients(config, args.clients, 200, lambda rpc, i: rpc.bench_echo.echo(i))

        cpu_before = cpu_snapshot(procs)
        echo_seconds, echo_lat = run_clients(config, args.clients, args.orders,
                                             lambda rpc, i: rpc.bench_echo.echo({"i": i}))
        echo_cpu = cpu_per_call(cpu_before, cpu_snapshot(procs), args.orders)

        def place(rpc, i):
            # Alternating sides around 100: about half of the orders cross and trade.
            side = "buy" if i % 2 else "sell"
            offset = (i * 7919) % 21 - 10
            price = f"{100 + offset / 100:.2f}"
            rpc.orders.place_order(users[i % len(users)], MARKET, side, "limit",
                                   quantity="0.1000", price=price,
                                   client_order_id=f"b{i}-{uuid.uuid4().hex[:8]}")

        cpu_before = cpu_snapshot(procs)
        order_seconds, order_lat = run_clients(config, args.clients, args.orders, place)

        # Wait until the engines journaled and wallets settled everything.
        with psycopg.connect(settings.postgres_dsn(NAMESPACE)) as conn:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                journaled = conn.execute("SELECT count(*) FROM matching_journal WHERE command_id "
                                         "LIKE 'place:%%'").fetchone()[0]
                if journaled >= args.orders:
                    break
                time.sleep(0.2)
            trades = conn.execute("SELECT count(DISTINCT trade_id) FROM order_fills").fetchone()[0]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                settled = conn.execute("SELECT count(*) FROM wallets.transactions WHERE "
                                       "idempotency_key LIKE 'trade:%%'").fetchone()[0]
                if settled >= trades:
                    break
                time.sleep(0.2)
            settle_lat = [float(row[0]) for row in conn.execute(
                "SELECT extract(epoch FROM t.created_at) * 1000 - f.executed_at "
                "FROM order_fills f JOIN wallets.transactions t "
                "ON t.idempotency_key = 'trade:' || f.market || ':' || f.trade_id "
                "WHERE f.is_maker").fetchall()]
        # Until every order is journaled and every trade settled: the whole path.
        order_cpu = cpu_per_call(cpu_before, cpu_snapshot(procs), args.orders)

        # Failover: kill -9 the engine processes in turn under a steady trickle of orders.
        failover = measure_failover(settings, config, procs, users)
    finally:
        for proc in procs.values():
            proc.stop(timeout=10)

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")
    orders_per_s = args.orders / order_seconds
    echo_per_s = args.orders / echo_seconds
    print(f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"processes: 2 orders, 2 matching, 1 wallets, 2 echo; {args.clients} clients, "
          f"{args.orders} orders, {args.users} users")
    print(f"empty RPC:   {echo_per_s:8.0f} calls/s   p50 {percentile(echo_lat, .5) * 1e3:6.1f} ms"
          f"   p99 {percentile(echo_lat, .99) * 1e3:6.1f} ms")
    print(f"place_order: {orders_per_s:8.0f} orders/s  p50 {percentile(order_lat, .5) * 1e3:6.1f} ms"
          f"   p99 {percentile(order_lat, .99) * 1e3:6.1f} ms   (accepted = held, persisted, "
          f"command committed)")
    print(f"ratio place_order / empty RPC: {orders_per_s / echo_per_s:.2f}")
    print(f"CPU per empty RPC, us: {echo_cpu}")
    print(f"CPU per order until journaled and settled, us: {order_cpu}")
    print(f"matched: {args.orders} orders journaled by the engine, {trades} trades")
    if settle_lat:
        print(f"fill-to-settlement: p50 {statistics.median(settle_lat):.0f} ms   "
              f"p99 {percentile(settle_lat, .99):.0f} ms   ({len(settle_lat)} trades)")
    for name, seconds in failover:
        print(f"failover after kill -9 of {name}: next command journaled {seconds:.2f} s later")


def measure_failover(settings, config, procs, users):
    results = []
    for name in ("matching-a", "matching-b"):
        with ClusterRpcProxy(config, timeout=120) as rpc:
            stop = {"flag": False}

            def trickle():
                i = 0
                while not stop["flag"]:
                    i += 1
                    rpc.orders.place_order(users[i % len(users)], MARKET, "buy", "limit",
                                           quantity="0.1000", price="90.00",
                                           client_order_id=f"f{uuid.uuid4().hex[:12]}")
                    eventlet.sleep(0.01)
            thread = eventlet.spawn(trickle)
            eventlet.sleep(1.0)
            with psycopg.connect(settings.postgres_dsn(NAMESPACE), autocommit=True) as conn:
                def last_seq():
                    return conn.execute("SELECT max(seq) FROM matching_journal WHERE market = %s",
                                        (MARKET,)).fetchone()[0]
                os.kill(procs[name].running_pid(), signal.SIGKILL)
                killed_at = time.perf_counter()
                seq = last_seq()
                # If the killed engine was the standby, the active one just goes on.
                while last_seq() <= seq and time.perf_counter() - killed_at < 30:
                    time.sleep(0.01)
                results.append((name, time.perf_counter() - killed_at))
            stop["flag"] = True
            thread.wait()
            procs[name].start()
            eventlet.sleep(2.0)
    return results


if __name__ == "__main__":
    main()
