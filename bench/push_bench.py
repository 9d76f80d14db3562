"""Live push benchmark: many Socket.IO connections subscribed to a market's
depth and trades while orders flow. Prints its figures.

Needs the running stack (`make up`); works in the demo namespace with two
fresh traders (never the demo ones) trading ETH-USDT with each other near
the reference price, so about half of the orders trade.

* ``--gateways`` gateway processes of the bench's own (``python -m gateway``
  on spare ports, one push cluster of their own: one active bridge, the
  kombu message queue between them), stopped at the end.
* ``--clients`` client processes, each holding its share of
  ``--connections`` asyncio Socket.IO connections (websocket transport),
  spread round-robin over the gateways, each subscribed to depth and trades.
* Orders: ``--rate`` orders/s for ``--seconds`` through orders.place_order
  (``--threads`` callers, each with its own RPC proxy), limit orders of
  either side within 0.3 USDT of the reference price.

Figures: connections held per gateway process; messages delivered per
second (all connections); the delay from a trade's commit (``executed_at``,
stamped by the matching service as it journals the batch) to its arrival
at each client (p50/p99/max over every delivery); the same for book diffs
(``at``); resident memory per connection (each gateway's RSS growth from
before the connections to after, divided by its connections). Clients and
gateways share the machine's 2 cores: the client processes' own CPU is part
of the delay.

    .venv/bin/python bench/push_bench.py [--connections 1000] [--clients 4] [--gateways 2]
                                         [--rate 100] [--seconds 30]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import secrets
import socket
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

MARKET = "ETH-USDT"
PASSWORD = "bench-Password-local-dev-only-1"
CONNECT_TIMEOUT_S = 180


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# -- gateways ---------------------------------------------------------------------------
def start_gateways(count: int, channel: str, log_dir: Path) -> list[tuple[subprocess.Popen, str]]:
    import requests
    started = []
    for index in range(count):
        port = free_port()
        env = {**os.environ, "EXCHANGE_GATEWAY_PORT": str(port), "EXCHANGE_PUSH_CHANNEL": channel,
               "PYTHONPATH": str(REPO_ROOT)}
        log = open(log_dir / f"push-bench-gateway-{index}.log", "ab")
        process = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=REPO_ROOT, env=env,
                                   stdout=log, stderr=log)
        started.append((process, f"http://127.0.0.1:{port}"))
        if index == 0:
            time.sleep(1.0)  # the first one holds the active bridge
    for process, url in started:
        for _ in range(240):
            assert process.poll() is None, f"gateway {url} exited (see {log_dir})"
            try:
                requests.get(url + "/api/v1/time", timeout=2)
                break
            except requests.RequestException:
                time.sleep(0.25)
    return started


# -- client processes -------------------------------------------------------------------
def client_process(index: int, urls: list[str], count: int, ready, go, stop, results):
    import asyncio

    import socketio

    async def run():
        clients, connected = [], {url: 0 for url in urls}
        trade_delays, depth_delays, bridge_delays, fanout_delays = [], [], [], []
        counts = {"trades": 0, "depth": 0, "depth_snapshot": 0}
        timing = {"on": False}
        lost: dict[str, int] = {}

        def make(url):
            client = socketio.AsyncClient(reconnection=False)

            @client.on("trades")
            async def trades(data):
                counts["trades"] += 1
                if timing["on"]:
                    received = now_ms()
                    trade_delays.extend(received - t["executed_at"] for t in data["trades"])

            @client.on("depth")
            async def depth(data):
                counts["depth"] += 1
                if timing["on"] and data.get("at"):
                    depth_delays.append(now_ms() - data["at"])
                    received = now_ms()
                    bridge_delays.append(data["pushed_at"] - data["at"])
                    fanout_delays.append(received - data["pushed_at"])

            @client.on("depth_snapshot")
            async def snapshot(_data):
                counts["depth_snapshot"] += 1

            @client.on("disconnect")
            async def disconnected(reason=None):
                if timing["on"]:
                    lost[str(reason)] = lost.get(str(reason), 0) + 1

            return client

        async def open_one(n):
            url = urls[(index + n) % len(urls)]
            client = make(url)
            for _attempt in range(5):
                try:
                    await client.connect(url, transports=["websocket"], wait_timeout=30)
                    await client.call("subscribe", {"channel": "depth", "market": MARKET},
                                      timeout=60)
                    await client.call("subscribe", {"channel": "trades", "market": MARKET},
                                      timeout=60)
                    connected[url] += 1
                    clients.append(client)
                    return
                except Exception:
                    await client.disconnect()
                    await asyncio.sleep(0.5)

        # Opened in small waves: a burst of handshakes would time out on 2 cores.
        for start in range(0, count, 25):
            await asyncio.gather(*(open_one(n) for n in range(start, min(count, start + 25))))
        ready.put((index, connected))
        while not go.is_set():
            await asyncio.sleep(0.05)
        for key in counts:
            counts[key] = 0
        timing["on"] = True
        started = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        timing["on"] = False
        still = sum(1 for c in clients if c.connected)
        results.put({"index": index, "counts": counts, "elapsed": elapsed, "still": still,
                     "trade_delays": trade_delays, "depth_delays": depth_delays,
                     "bridge_delays": bridge_delays, "fanout_delays": fanout_delays,
                     "lost": lost})
        await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)

    asyncio.run(run())


# -- order flow -------------------------------------------------------------------------
def new_trader(rpc, funds: dict) -> str:
    username = f"pbench-{uuid.uuid4().hex[:10]}"
    signup = rpc.users.sign_up({"username": username, "email": f"{username}@example.test",
                                "password": PASSWORD, "first_name": "Push",
                                "last_name": "Bench"})
    for asset, amount in funds.items():
        address = rpc.wallets.deposit_address(signup["user_id"], asset)["address"]
        rpc.wallets.credit_deposit(asset, address, amount, "0x" + secrets.token_hex(32), 100)
    return signup["user_id"]


def order_flow(config: dict, traders: list[str], centre: Decimal, rate: float, seconds: float,
               threads: int) -> dict:
    from nameko.standalone.rpc import ClusterRpcProxy
    placed, refused = [0], [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def caller(seed: int):
        rng = random.Random(seed)
        interval = threads / rate
        next_at = time.monotonic()
        with ClusterRpcProxy(config, timeout=30) as rpc:
            while time.monotonic() < deadline:
                side = rng.choice(["buy", "sell"])
                price = (centre + Decimal(rng.randint(-30, 30)) / 100).quantize(Decimal("0.01"))
                quantity = (Decimal(rng.randint(10, 300)) / 10000).quantize(Decimal("0.0001"))
                try:
                    rpc.orders.place_order(rng.choice(traders), MARKET, side, "limit",
                                           quantity=str(quantity), price=str(price),
                                           time_in_force="IOC" if rng.random() < 0.5 else "GTC")
                    with lock:
                        placed[0] += 1
                except Exception:
                    with lock:
                        refused[0] += 1
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))

    workers = [threading.Thread(target=caller, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 60)
    return {"placed": placed[0], "refused": refused[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--rate", type=float, default=100.0, help="orders per second")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()

    from nameko.standalone.rpc import ClusterRpcProxy

    from services.common.config import load_settings
    settings = load_settings()
    config = settings.nameko_config()
    log_dir = settings.run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with ClusterRpcProxy(config, timeout=60) as rpc:
        traders = [new_trader(rpc, {"USDT": "10000000", "ETH": "10000"}) for _ in range(2)]
        depth = rpc.matching.get_depth(MARKET, 1)
    centre = Decimal(depth["reference_price"] or "2000")

    channel = f"push-bench-{uuid.uuid4().hex[:8]}"
    gateways = start_gateways(args.gateways, channel, log_dir)
    urls = [url for _process, url in gateways]
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    go, stop = context.Event(), context.Event()
    try:
        baseline = {url: rss_kib(process.pid) for process, url in gateways}
        share = [args.connections // args.clients + (1 if i < args.connections % args.clients else 0)
                 for i in range(args.clients)]
        procs = [context.Process(target=client_process,
                                 args=(i, urls, share[i], ready, go, stop, results), daemon=True)
                 for i in range(args.clients)]
        opening = time.monotonic()
        for proc in procs:
            proc.start()
        per_gateway = {url: 0 for url in urls}
        for _ in procs:
            _index, connected = ready.get(timeout=CONNECT_TIMEOUT_S)
            for url, n in connected.items():
                per_gateway[url] += n
        opened_s = time.monotonic() - opening
        time.sleep(2.0)  # let the gateways settle before reading their memory
        loaded = {url: rss_kib(process.pid) for process, url in gateways}
        held = sum(per_gateway.values())

        go.set()
        flow = order_flow(config, traders, centre, args.rate, args.seconds, args.threads)
        time.sleep(2.0)  # the last pushes arrive
        stop.set()
        gathered = [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(30)
    finally:
        for process, _url in gateways:
            process.terminate()
        for process, _url in gateways:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()

    elapsed = max(r["elapsed"] for r in gathered)
    messages = sum(sum(r["counts"].values()) for r in gathered)
    trade_delays = [d for r in gathered for d in r["trade_delays"]]
    depth_delays = [d for r in gathered for d in r["depth_delays"]]
    bridge_delays = [d for r in gathered for d in r["bridge_delays"]]
    fanout_delays = [d for r in gathered for d in r["fanout_delays"]]
    still = sum(r["still"] for r in gathered)
    lost: dict[str, int] = {}
    for r in gathered:
        for reason, n in r["lost"].items():
            lost[reason] = lost.get(reason, 0) + n
    print(f"push bench: {args.connections} connections asked, {args.clients} client processes, "
          f"{args.gateways} gateway processes, {args.rate:.0f} orders/s asked for {args.seconds:.0f} s")
    print(f"connections held: {held} (opened in {opened_s:.1f} s), still connected at the end: "
          f"{still}" + (f" (lost while timed: {lost})" if lost else ""))
    print(f"machine load average at the end: {os.getloadavg()[0]:.1f} (2 cores)")
    for url in urls:
        grown = (loaded[url] - baseline[url]) / max(1, per_gateway[url])
        print(f"  gateway {url}: {per_gateway[url]} connections, RSS {baseline[url] / 1024:.0f} -> "
              f"{loaded[url] / 1024:.0f} MiB, {grown:.0f} KiB per connection")
    print(f"orders placed: {flow['placed']} ({flow['placed'] / args.seconds:.1f}/s), "
          f"refused {flow['refused']}")
    print(f"messages delivered: {messages} in {elapsed:.1f} s = {messages / elapsed:,.0f} msg/s "
          f"(trade batches {sum(r['counts']['trades'] for r in gathered)}, "
          f"depth diffs {sum(r['counts']['depth'] for r in gathered)})")
    print(f"trade commit -> client: {len(trade_delays)} deliveries, "
          f"p50 {percentile(trade_delays, 50):.0f} ms, p99 {percentile(trade_delays, 99):.0f} ms, "
          f"max {max(trade_delays, default=float('nan')):.0f} ms")
    print(f"book change -> client: {len(depth_delays)} deliveries, "
          f"p50 {percentile(depth_delays, 50):.0f} ms, p99 {percentile(depth_delays, 99):.0f} ms; "
          f"of which commit -> bridge emit p50 {percentile(bridge_delays, 50):.0f} ms, "
          f"p99 {percentile(bridge_delays, 99):.0f} ms, bridge emit -> client (the gateways' "
          f"fan-out) p50 {percentile(fanout_delays, 50):.0f} ms, "
          f"p99 {percentile(fanout_delays, 99):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
