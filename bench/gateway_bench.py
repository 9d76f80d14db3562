"""Gateway benchmark: signed ``POST /api/v3/order`` (plus a read mix) from N
client processes against the running gateway, and the bare Nameko RPC rate
measured in the same run. Prints its figures.

Needs the running stack (`make up`). Works in the demo namespace with fresh
traders (one per client process, funded by a deposit), never the demo ones.

* Each client process is one partner: its own loopback source address
  (127.77.0.k, so the per-IP weight limit is per client, as for real
  partners) and ACCOUNTS_PER_CLIENT traders of its own, one API key each,
  used in turn (the new-order limit, 100 per 10 s per account by default,
  would otherwise cap the run at 10 orders/s; since session 17 the keys of
  one account share it, so several keys of one trader no longer help).
  Inside it, ``--threads`` keep-alive sessions send requests back to back.
* Orders: LIMIT IOC buys 10 % under the reference price with
  ``newOrderRespType=ACK``: each goes the whole way (signature check over
  RPC, acceptance in orders with its hold, the engine, the expiry and the
  release) without trading with anyone and without piling up resting
  orders. "Accepted" is the gateway's 200.
* Reads (``--read-share`` of the requests): depth, 24 h ticker, signed
  open orders, in turn.
* Bare RPC: an empty echo service (bench/echo_service.py, started here in
  the stack's vhost and stopped at the end) called by as many concurrent
  callers as there are client threads, for ``--rpc-seconds``.

    .venv/bin/python bench/gateway_bench.py [--clients 4] [--threads 4] [--seconds 20]
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import credit_deposit, percentile  # noqa: E402

ACCOUNTS_PER_CLIENT = 8
SYMBOL, MARKET = "BTCUSDT", "BTC-USDT"


# ------------------------------------------------------------------ set-up

def new_partner(settings, index: int, funds: dict | None = None, keys: int = 1) -> dict:
    """A trader with ``keys`` trade keys and the deposits ``funds`` (asset ->
    amount; default 10,000,000 USDT)."""
    from nameko.standalone.rpc import ClusterRpcProxy
    from services.common.identity import backend_openid
    username, password = f"bench-{uuid.uuid4().hex[:10]}", "bench-Password-local-dev-1"
    with ClusterRpcProxy(settings.nameko_config(), timeout=60) as rpc:
        user_id = rpc.users.sign_up({"username": username, "email": f"{username}@example.test",
                                     "password": password, "first_name": "Bench",
                                     "last_name": f"Client{index}"})["user_id"]
        token = backend_openid(settings).token(username, password)["access_token"]
        made = [rpc.users.create_api_key(token, {"label": f"bench-{k}",
                                                 "permissions": ["read", "trade"]})
                for k in range(keys)]
        for asset, amount in (funds or {"USDT": "10000000"}).items():
            credit_deposit(rpc, user_id, asset, amount)
    return {"user_id": user_id, "keys": [(k["api_key"], k["secret"]) for k in made]}


def bench_price(settings) -> str:
    from decimal import Decimal
    from nameko.standalone.rpc import ClusterRpcProxy
    with ClusterRpcProxy(settings.nameko_config(), timeout=30) as rpc:
        book = rpc.matching.get_depth(MARKET, 1)
    reference = Decimal(book["reference_price"] or book["buy"][0][0])
    return str((reference * Decimal("0.9")).quantize(Decimal("0.01")))


# ------------------------------------------------------------------ client processes

def client_process(index, base_url, partner, price, seconds, threads, read_share, start_at,
                   results):
    import threading

    import requests
    from requests_toolbelt.adapters.source import SourceAddressAdapter

    source = f"127.77.0.{index + 2}"
    orders, reads, refused, order_lat, read_lat = [], [], {}, [], []
    lock = threading.Lock()
    key_turn = [0]

    def signed(params, key):
        query = urlencode({**params, "timestamp": int(time.time() * 1000), "recvWindow": 10000})
        return f"{query}&signature=" + hmac.new(key[1].encode(), query.encode(),
                                                hashlib.sha256).hexdigest()

    def worker(seed):
        rng = random.Random(seed)
        session = requests.Session()
        session.mount("http://", SourceAddressAdapter((source, 0)))
        while time.time() < start_at:
            time.sleep(0.01)
        end = start_at + seconds
        while time.time() < end:
            with lock:
                key = partner["keys"][key_turn[0] % len(partner["keys"])]
                key_turn[0] += 1
            headers = {"X-MBX-APIKEY": key[0]}
            began = time.perf_counter()
            if rng.random() < read_share:
                kind = rng.choice(("depth", "ticker", "open"))
                if kind == "depth":
                    r = session.get(f"{base_url}/api/v3/depth?symbol={SYMBOL}&limit=20",
                                    timeout=30)
                elif kind == "ticker":
                    r = session.get(f"{base_url}/api/v3/ticker/24hr?symbol={SYMBOL}",
                                    timeout=30)
                else:
                    r = session.get(f"{base_url}/api/v3/openOrders?"
                                    + signed({"symbol": SYMBOL}, key), headers=headers,
                                    timeout=30)
                latency, bucket, lat = time.perf_counter() - began, reads, read_lat
            else:
                body = signed({"symbol": SYMBOL, "side": "BUY", "type": "LIMIT",
                               "timeInForce": "IOC", "quantity": "0.001", "price": price,
                               "newOrderRespType": "ACK"}, key)
                r = session.post(f"{base_url}/api/v3/order", data=body,
                                 headers={**headers, "Content-Type":
                                          "application/x-www-form-urlencoded"}, timeout=30)
                latency, bucket, lat = time.perf_counter() - began, orders, order_lat
            with lock:
                if r.status_code == 200:
                    bucket.append(1)
                    lat.append(latency)
                else:
                    code = f"{r.status_code}:{r.json().get('code') if r.content else ''}"
                    refused[code] = refused.get(code, 0) + 1

    pool = [threading.Thread(target=worker, args=(index * 100 + t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    results.put({"orders": len(orders), "reads": len(reads), "refused": refused,
                 "order_lat": order_lat, "read_lat": read_lat})


# ------------------------------------------------------------------ bare RPC

def start_echo(settings):
    config = settings.run_dir / "nameko.yaml"
    log = open(settings.run_dir / "logs" / "bench-echo.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "nameko", "run", "--config", str(config),
                                "bench.echo_service"], cwd=REPO, stdout=log, stderr=log,
                               env={**os.environ, "PYTHONPATH": str(REPO)},
                               start_new_session=True)
    return process


def echo_rate(settings, callers: int, seconds: float):
    """Empty RPCs per second from ``callers`` concurrent greenthreads, each
    with its own proxy (the gateway's pool is the same: one proxy per
    in-flight request)."""
    import eventlet
    from nameko.standalone.rpc import ClusterRpcProxy
    config = settings.nameko_config()
    deadline = time.time() + 60
    while True:   # the echo service is up when it answers
        try:
            with ClusterRpcProxy(config, timeout=2) as rpc:
                rpc.bench_echo.echo(0)
            break
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    latencies = []

    def caller():
        with ClusterRpcProxy(config, timeout=30) as rpc:
            end = time.time() + seconds
            while time.time() < end:
                began = time.perf_counter()
                rpc.bench_echo.echo({"i": 1})
                latencies.append(time.perf_counter() - began)

    pool = eventlet.GreenPool(callers)
    began = time.time()
    for _ in range(callers):
        pool.spawn(caller)
    pool.waitall()
    return len(latencies) / (time.time() - began), latencies


def rpc_phase(callers: int, seconds: float) -> tuple[float, list]:
    """The echo measurement in its own interpreter (eventlet patched from
    the start, as Nameko needs), reporting as one JSON line."""
    import json
    done = subprocess.run([sys.executable, __file__, "--rpc-only", str(callers), str(seconds)],
                          cwd=REPO, capture_output=True, text=True, timeout=seconds + 180,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = [l for l in done.stdout.splitlines() if l.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(f"the RPC phase failed: {done.stderr[-2000:]}")
    found = json.loads(lines[-1])
    return found["per_s"], found["latencies"]


def rpc_only(callers: int, seconds: float) -> None:
    import json

    import eventlet
    eventlet.monkey_patch()
    from services.common.config import load_settings
    per_s, latencies = echo_rate(load_settings(), callers, seconds)
    print(json.dumps({"per_s": per_s, "latencies": latencies}))


# ------------------------------------------------------------------ main

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rpc-seconds", type=float, default=10)
    parser.add_argument("--read-share", type=float, default=0.2)
    args = parser.parse_args()
    if not (1 <= args.clients <= 64 and 1 <= args.threads <= 64 and 1 <= args.seconds <= 300):
        parser.error("clients and threads 1..64, seconds 1..300")

    from services.common.config import load_settings
    settings = load_settings()
    base_url = settings.gateway_url
    # One partner per client process, its keys each of an account of its own.
    partners = [{"keys": [key for _ in range(ACCOUNTS_PER_CLIENT)
                          for key in new_partner(settings, i)["keys"]]}
                for i in range(args.clients)]
    price = bench_price(settings)
    load_before = os.getloadavg()

    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    start_at = time.time() + 3
    procs = [ctx.Process(target=client_process,
                         args=(i, base_url, partners[i], price, args.seconds, args.threads,
                               args.read_share, start_at, results))
             for i in range(args.clients)]
    for p in procs:
        p.start()
    gathered = [results.get(timeout=args.seconds + 120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    load_after = os.getloadavg()

    echo = start_echo(settings)
    try:
        echo_per_s, echo_lat = rpc_phase(args.clients * args.threads, args.rpc_seconds)
    finally:
        os.killpg(echo.pid, signal.SIGTERM)
        try:
            echo.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(echo.pid, signal.SIGKILL)

    orders = sum(r["orders"] for r in gathered)
    reads = sum(r["reads"] for r in gathered)
    refused: dict = {}
    for r in gathered:
        for code, n in r["refused"].items():
            refused[code] = refused.get(code, 0) + n
    order_lat = [x for r in gathered for x in r["order_lat"]]
    read_lat = [x for r in gathered for x in r["read_lat"]]
    ms = 1e3
    print(f"gateway {base_url}: {args.clients} client processes x {args.threads} threads, "
          f"{args.seconds:.0f} s, read share {args.read_share}")
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(f"orders accepted: {orders / args.seconds:8.1f} orders/s   "
          f"p50 {percentile(order_lat, .5) * ms:6.1f} ms   p99 {percentile(order_lat, .99) * ms:6.1f} ms"
          f"   ({orders} orders)")
    print(f"reads served:    {reads / args.seconds:8.1f} reads/s    "
          f"p50 {percentile(read_lat, .5) * ms:6.1f} ms   p99 {percentile(read_lat, .99) * ms:6.1f} ms")
    print(f"refused: {refused or 'none'}")
    print(f"bare Nameko RPC ({args.clients * args.threads} callers, 1 echo process): "
          f"{echo_per_s:8.1f} calls/s   p50 {percentile(echo_lat, .5) * ms:6.1f} ms   "
          f"p99 {percentile(echo_lat, .99) * ms:6.1f} ms")
    print(f"ratio accepted orders / bare RPC: {orders / args.seconds / echo_per_s:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--rpc-only":
        rpc_only(int(sys.argv[2]), float(sys.argv[3]))
    else:
        main()
