"""Live push benchmark: many Socket.IO connections subscribed to a market's
depth and trades while orders flow. Prints its figures.

Needs the running stack (`make up`); works in the demo namespace with two
fresh traders (never the demo ones) trading ETH-USDT with each other near
the reference price, so about half of the orders trade.

* ``--gateways`` gateway processes of the bench's own (``python -m gateway``
  on spare ports), stopped at the end. Each consumes the engine's batches
  for the market streams from its own queue. They join the stack's push
  cluster (its channel): the stack's gateway stays the one active private
  bridge and its message queue reaches them, as one deployment's processes
  share one; a cluster of their own would run a second private bridge
  making the same reads. With ``--synthetic`` they form a cluster of their
  own (the synthetic frames must reach the bench's connections only).
* ``--clients`` client processes, each holding its share of
  ``--connections`` Socket.IO connections (Engine.IO 4 over a websocket parsed
  by hand, to keep the clients' own CPU low), spread round-robin over the
  gateways, each subscribed to depth and trades and reading every frame; one
  in ``--sample`` decodes and times its frames. They leave from loopback
  addresses of their own, ``CONNECTIONS_PER_SOURCE`` each: within the
  gateway's caps on one client address.
* Orders: ``--rate`` orders/s for ``--seconds`` through orders.place_order,
  open loop (an order is due every 1/rate s, answered or not; ``--threads``
  callers, each with its own RPC proxy, take the due orders), limit orders
  of either side within 0.3 USDT of the reference price. ``--batched``: the
  due orders go in ``orders.place_orders`` calls, as the gateway's order
  batcher sends concurrent REST orders (two callers, one call in flight
  each, the orders due meanwhile form the next).

Figures: connections held per gateway process; messages delivered per
second (all connections); the delay from a trade's commit (``executed_at``,
stamped by the matching service as it journals the batch) to its arrival
at each client (p50/p99/max over every delivery); the same for book diffs
(``at``); the delay of each hop (below); resident memory per connection (each gateway's RSS growth from
before the connections to after, divided by its connections). Clients and
gateways share the machine's 2 cores: the client processes' own CPU is part
of the delay, and their sessions start at niceness -5 (``--client-nice``,
CLIENT_NICE: they stand in for the traders' own machines; 0 = the same share
as every other process).

Per hop, from wall-clock ms stamps of this one machine: the frames' own
``trace`` (the engine batch's ``at``, the outbox relay's ``relayed_at``, the
gateway's consume and emit, the client's receipt) and, per taker order that
traded, the bench's own tap of the market's command messages and engine
batches (the order due, answered, its command relayed by orders' outbox,
its engine batch). The last line is the verdict against issue 14's target.

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

from bench.common import KERNEL, MACHINE, REST, cpu_delta, cpu_snapshot  # noqa: E402

MARKET = "ETH-USDT"
PASSWORD = "bench-Password-local-dev-only-1"
CONNECT_TIMEOUT_S = 600
# Connections per loopback source address (127.0.0.0/8 is all loopback): the
# gateway caps what one client address holds and opens (gateway/
# connection_limits.py; 2,000 open per process and 3,000 attempts per 5
# minutes by default, 100 and 300 when this was written), the traders the
# bench stands for come from many addresses, and 127.0.0.1's attempts are
# counted for every local client (the test suite's browsers among them).
CONNECTIONS_PER_SOURCE = 50


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def own_cpu_share() -> None:
    """Puts the calling process in a session of its own. With the kernel's
    autogroup scheduling (``/proc/sys/kernel/sched_autogroup_enabled``, on
    here) the CPU is shared fairly between sessions first: every server and
    service of ``make up`` runs in a session of its own (stack/proc.py), and
    the bench's gateways, clients and tap sharing the bench's one session got
    one share between them on a saturated machine (session 8: each gateway's
    event loop woke 0.5-0.6 s late at p50 while using 8-9% of a core)."""
    if os.getsid(0) != os.getpid():
        os.setsid()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def stack_processes(pid_dir: Path) -> dict[str, list[int]]:
    """The stack's processes by pid file (``run/pids``, stack/proc.py), each
    with its descendants (a service's forks, Keycloak's JVM under its
    wrapper). PostgreSQL and RabbitMQ are left to bench.common.cpu_snapshot,
    which counts every process of theirs (the other work's backends too)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    roles = {}
    for pid_file in sorted(pid_dir.glob("*.pid")):
        name = pid_file.stem
        if name in ("postgresql", "rabbitmq", "epmd"):
            continue
        try:
            top = int(pid_file.read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue
        pids, stack = [], [top]
        while stack:
            pid = stack.pop()
            pids.append(pid)
            stack.extend(children.get(pid, ()))
        roles[name] = pids
    return roles


def machine_cpu_lines(used: dict, seconds: float, orders: int, frames: int) -> list[str]:
    """The timed window's CPU by process, busiest first: the share of a core
    each used, and the machine's CPU per order placed and per frame delivered
    (the figures least bent by the load)."""
    busy = used[MACHINE]
    lines = [f"machine CPU in the timed window ({seconds:.1f} s, 2 cores): busy {busy:.1f} s "
             f"({100 * busy / seconds / 2:.0f}% of the machine), kernel (system, irq) "
             f"{used[KERNEL]:.1f} s; per order placed {1000 * busy / max(1, orders):.1f} ms, "
             f"per frame delivered {1e6 * busy / max(1, frames):.0f} us"]
    by_process = sorted(((role, secs) for role, secs in used.items()
                         if role not in (MACHINE, KERNEL) and secs >= 0.05),
                        key=lambda item: -item[1])
    lines.append("  by process (% of one core): " + ", ".join(
        f"{role} {100 * secs / seconds:.0f}%" for role, secs in by_process))
    if REST in used:
        lines.append(f"  ('{REST}' is busy time of no process named here)")
    return lines


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# -- gateways ---------------------------------------------------------------------------
def niced(nice: int) -> None:
    """In a session of its own (own_cpu_share): its niceness, and its
    session's. Under autogroup scheduling the CPU is shared between sessions
    first, whatever the niceness of their processes: only the session's own
    (``/proc/self/autogroup``) moves its share against the stack's."""
    os.nice(nice)
    try:
        with open("/proc/self/autogroup", "w") as autogroup:
            autogroup.write(str(nice))
    except OSError:
        pass  # no autogroup scheduling: the niceness alone counts


def start_gateways(count: int, channel: str | None, log_dir: Path,
                   nice: int = 0) -> list[tuple[subprocess.Popen, str]]:
    """``count`` gateways on spare ports; in push cluster ``channel``, or in
    the stack's own when None; ``nice`` added to their CPU niceness (below
    0: scheduled before the rest of the machine; needs root)."""
    import requests
    started = []
    for index in range(count):
        port = free_port()
        lag_file = log_dir / f"push-bench-gateway-{index}.hub-lag"
        lag_file.unlink(missing_ok=True)
        env = {**os.environ, "EXCHANGE_GATEWAY_PORT": str(port),
               "PYTHONPATH": str(REPO_ROOT), "EXCHANGE_BENCH_HUB_LAG_FILE": str(lag_file)}
        if channel is not None:
            env["EXCHANGE_PUSH_CHANNEL"] = channel
        log = open(log_dir / f"push-bench-gateway-{index}.log", "ab")
        # bench/push_gateway.py: the gateway, plus a probe of its event loop.
        process = subprocess.Popen([sys.executable, str(REPO_ROOT / "bench" / "push_gateway.py")],
                                   cwd=REPO_ROOT, env=env, stdout=log, stderr=log,
                                   start_new_session=True,  # see own_cpu_share
                                   preexec_fn=(lambda: niced(nice)) if nice else None)
        started.append((process, f"http://127.0.0.1:{port}"))
        if index == 0 and channel is not None:
            time.sleep(1.0)  # in a cluster of their own, the first holds the active bridge
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
# Each connection speaks Engine.IO 4 / Socket.IO 5 over a websocket parsed by
# hand in an asyncio protocol (no client library: the clients share the 2
# cores with the gateways, and a library's per-message cost was larger than
# the gateway's per-frame cost). Every connection counts every frame and
# answers pings; one in ``--sample`` also decodes its frames and times them.
def source_addresses(shares: list[int], per_source: int = CONNECTIONS_PER_SOURCE,
                     rng: random.Random | None = None) -> list[list[str]]:
    """Each client process's loopback source addresses, one per
    ``per_source`` of its ``shares[i]`` connections, none shared. Fresh for
    each run (a random second octet): the attempt counters outlive a run."""
    second = (rng or random).randint(100, 199)
    addresses, made = [], 0
    for share in shares:
        needed = -(-share // per_source)
        addresses.append([f"127.{second}.{(made + k) // 250}.{(made + k) % 250 + 2}"
                          for k in range(needed)])
        made += needed
    return addresses


def client_process(index: int, urls: list[str], count: int, sample: int, ready, go, stop,
                   results, nice: int = 0, sources: list[str] = ("127.0.0.1",)):
    import asyncio
    import json
    import struct

    own_cpu_share()
    if nice:
        niced(nice)

    connected = {url: 0 for url in urls}
    trade_delays, depth_delays, bridge_delays, fanout_delays = [], [], [], []
    # One entry per timed frame: its trace (gateway/bridge.py) plus when this
    # client got it; the parent turns them into per-hop delays.
    traces: list[dict] = []
    counts = {"trades": 0, "depth": 0, "depth_snapshot": 0, "other": 0}
    timing = {"on": False}
    lost: dict[str, int] = {}
    alive = [0]

    def client_frame(text: bytes) -> bytes:
        # Masked with the all-zero key: the payload goes as it is.
        return struct.pack("!BB", 0x81, 0x80 | len(text)) + b"\0\0\0\0" + text \
            if len(text) <= 125 else \
            struct.pack("!BBH", 0x81, 0x80 | 126, len(text)) + b"\0\0\0\0" + text

    subscribe = b"".join(client_frame(f"42{ack}".encode() + json.dumps(
        ["subscribe", {"channel": channel, "market": MARKET}]).encode())
        for ack, channel in ((1, "depth"), (2, "trades")))
    pong = client_frame(b"3")

    class Connection(asyncio.Protocol):
        def __init__(self, url: str, timed: bool, opened: asyncio.Future):
            self.url, self.timed, self.opened = url, timed, opened
            self.buffer = bytearray()
            self.upgraded = False
            self.resubscribed = 0
            self.transport = None
            self.stage = "TCP connected, upgrade not answered"

        def connection_made(self, transport):
            self.transport = transport
            host = self.url.removeprefix("http://")
            transport.write((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                             f"Host: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             f"Sec-WebSocket-Version: 13\r\n\r\n").encode())

        def data_received(self, data):
            buffer = self.buffer
            buffer += data
            if not self.upgraded:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                if not buffer.startswith(b"HTTP/1.1 101"):
                    self.transport.close()
                    return
                del buffer[:end + 4]
                self.upgraded = True
                self.stage = "upgraded, no Engine.IO open"
            at, size = 0, len(buffer)
            while size - at >= 2:
                length, head = buffer[at + 1] & 0x7F, 2
                if length == 126:
                    if size - at < 4:
                        break
                    length, head = struct.unpack_from("!H", buffer, at + 2)[0], 4
                elif length == 127:
                    if size - at < 10:
                        break
                    length, head = struct.unpack_from("!Q", buffer, at + 2)[0], 10
                if size - at < head + length:
                    break
                opcode = buffer[at] & 0x0F
                self.payload(opcode, bytes(buffer[at + head:at + head + length]))
                at += head + length
            del buffer[:at]

        def payload(self, opcode: int, data: bytes):
            if opcode == 0x8:
                self.transport.close()
            elif data == b"2":
                self.transport.write(pong)
            elif data.startswith(b"0{"):  # Engine.IO open: connect, subscribe
                self.stage = "Engine.IO open, Socket.IO connect not answered"
                self.transport.write(client_frame(b"40") + subscribe)
            elif data.startswith(b"40"):
                if not self.opened.done():
                    self.opened.set_result(True)
            elif data.startswith(b'42["trades"'):
                counts["trades"] += 1
                if self.timed and timing["on"]:
                    received = now_ms()
                    batch = json.loads(data[2:])[1]
                    trade_delays.extend(received - t["executed_at"] for t in batch["trades"])
                    if batch.get("trace"):
                        traces.append({**batch["trace"], "client": received, "stream": "trades"})
            elif data.startswith(b'42["depth"'):
                counts["depth"] += 1
                if self.timed and timing["on"]:
                    received = now_ms()
                    diff = json.loads(data[2:])[1]
                    depth_delays.append(received - diff["at"])
                    bridge_delays.append(diff["pushed_at"] - diff["at"])
                    fanout_delays.append(received - diff["pushed_at"])
                    if diff.get("trace"):
                        traces.append({**diff["trace"], "client": received, "stream": "depth"})
            elif data.startswith(b'42["depth_snapshot"'):
                counts["depth_snapshot"] += 1
            elif data.startswith(b'42["error"') and b'"UNAVAILABLE"' in data \
                    and self.resubscribed < 5:
                # The gateway could not read the market list yet: ask again.
                self.resubscribed += 1
                self.transport.write(subscribe)
            else:
                counts["other"] += 1

        def connection_lost(self, exc):
            if self.opened.done():
                alive[0] -= 1
                if timing["on"] and not stop.is_set():
                    reason = f"closed: {type(exc).__name__ if exc else 'by the gateway'}"
                    lost[reason] = lost.get(reason, 0) + 1
            elif not self.opened.done():
                self.opened.set_result(False)

    async def run():
        loop = asyncio.get_running_loop()
        transports = []

        async def one(n: int):
            url = urls[(index + n) % len(urls)]
            host, port = url.removeprefix("http://").split(":")
            opened = loop.create_future()
            made: list = []

            def protocol():
                made.append(Connection(url, n % sample == 0, opened))
                return made[0]
            try:
                source = sources[min(n // CONNECTIONS_PER_SOURCE, len(sources) - 1)]
                transport, _ = await asyncio.wait_for(loop.create_connection(
                    protocol, host, int(port), local_addr=(source, 0)), 60)
                transports.append(transport)
                ok = await asyncio.wait_for(opened, 60)
            except Exception as exc:
                # How far the handshake got: no TCP connection, the HTTP
                # upgrade, Engine.IO's open, or Socket.IO's connect.
                stage = made[0].stage if made else "no TCP connection"
                ok, reason = False, f"connect: {type(exc).__name__} ({stage})"
                lost[reason] = lost.get(reason, 0) + 1
            if ok:
                connected[url] += 1
                alive[0] += 1

        # Opened in small waves: a burst of handshakes would time out on 2 cores.
        for start in range(0, count, 25):
            await asyncio.gather(*(one(n) for n in range(start, min(count, start + 25))))
        await asyncio.sleep(1.0)  # the subscriptions' snapshots arrive
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
        still = alive[0]
        timing["on"] = False
        results.put({"index": index, "counts": counts, "elapsed": elapsed, "still": still,
                     "trade_delays": trade_delays, "depth_delays": depth_delays,
                     "bridge_delays": bridge_delays, "fanout_delays": fanout_delays,
                     "traces": traces, "lost": lost})
        for transport in transports:
            transport.close()

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


# ``--batched``: the due orders go as gateway/batcher.py sends concurrent REST
# orders, one ``orders.place_orders`` call in flight per caller (one per
# gateway process), the orders due meanwhile form the next after a short
# linger, at most MAX_BATCH each.
BATCH_CALLERS = 2
BATCH_LINGER_S = 0.002
MAX_BATCH = 200


def order_flow(config: dict, traders: list[str], centre: Decimal, rate: float, seconds: float,
               threads: int, batched: bool = False) -> dict:
    """Open loop: one order is due every 1/rate s whether or not earlier ones
    were answered; ``threads`` callers (each with its own RPC proxy) take the
    due orders in turn (``batched``: BATCH_CALLERS callers each take every
    order due, one ``place_orders`` call per batch). Each order's ``sent`` is
    when it was due (a caller late to take it counts in its delay) and
    ``answered`` when its answer came back (after its acceptance committed)."""
    import queue as queue_module

    from nameko.standalone.rpc import ClusterRpcProxy
    placed, refused, dropped = [0], [0], [0]
    lock = threading.Lock()
    # Orders still waiting for a caller this long after the last one was due
    # are dropped (counted): the run stays bounded when the machine cannot
    # keep up.
    give_up = time.monotonic() + seconds + 30
    timings: dict[int, tuple[int, int]] = {}  # order id -> (sent ms, answered ms)
    due: queue_module.Queue = queue_module.Queue()
    rng = random.Random(7)

    def caller():
        with ClusterRpcProxy(config, timeout=30) as rpc:
            while True:
                ticket = due.get()
                if ticket is None:
                    return
                sent, (trader, side, price, quantity, tif) = ticket
                if time.monotonic() > give_up:
                    with lock:
                        dropped[0] += 1
                    continue
                try:
                    order = rpc.orders.place_order(trader, MARKET, side, "limit",
                                                   quantity=quantity, price=price,
                                                   time_in_force=tif)
                    answered = now_ms()
                    with lock:
                        placed[0] += 1
                        timings[int(order["order_id"])] = (sent, answered)
                except Exception:
                    with lock:
                        refused[0] += 1

    def batch_caller():
        with ClusterRpcProxy(config, timeout=30) as rpc:
            finished = False
            while not finished:
                ticket = due.get()
                if ticket is None:
                    return
                time.sleep(BATCH_LINGER_S)
                tickets = [ticket]
                while len(tickets) < MAX_BATCH:
                    try:
                        more = due.get_nowait()
                    except queue_module.Empty:
                        break
                    if more is None:
                        finished = True
                        break
                    tickets.append(more)
                if time.monotonic() > give_up:
                    with lock:
                        dropped[0] += len(tickets)
                    continue
                orders = [{"user": trader, "market": MARKET, "side": side, "type": "limit",
                           "quantity": quantity, "price": price, "time_in_force": tif}
                          for _sent, (trader, side, price, quantity, tif) in tickets]
                try:
                    answers = rpc.orders.place_orders(orders)
                except Exception:
                    with lock:
                        refused[0] += len(tickets)
                    continue
                answered = now_ms()
                with lock:
                    for (sent, _order), answer in zip(tickets, answers):
                        if "order" in answer:
                            placed[0] += 1
                            timings[int(answer["order"]["order_id"])] = (sent, answered)
                        else:
                            refused[0] += 1

    workers = [threading.Thread(target=batch_caller if batched else caller, daemon=True)
               for _ in range(BATCH_CALLERS if batched else threads)]
    for worker in workers:
        worker.start()
    started = time.monotonic()
    for n in range(int(rate * seconds)):
        time.sleep(max(0.0, started + n / rate - time.monotonic()))
        side = rng.choice(["buy", "sell"])
        price = (centre + Decimal(rng.randint(-30, 30)) / 100).quantize(Decimal("0.01"))
        quantity = (Decimal(rng.randint(10, 300)) / 10000).quantize(Decimal("0.0001"))
        due.put((now_ms(), (rng.choice(traders), side, str(price), str(quantity),
                            "IOC" if rng.random() < 0.5 else "GTC")))
    for _ in workers:
        due.put(None)
    for worker in workers:
        worker.join(max(0.0, give_up + 35 - time.monotonic()))  # 30 s RPC timeout
    return {"placed": placed[0], "refused": refused[0], "dropped": dropped[0],
            "timings": timings}


class EngineTap:
    """The bench's own copies of the market's command messages and of the
    engine's push messages (exclusive queues, gone with the bench), so the
    hops before the gateways can be timed per order: when the outbox relay
    of orders sent the order's command (``relayed_at`` header), when the
    engine batched it (the push message's ``at``), when the matching relay
    sent that batch's events. In a process of its own: the order flow's
    callers would otherwise hold its stamps back (one interpreter lock)."""

    def __init__(self, amqp_uri: str):
        context = multiprocessing.get_context("spawn")
        self.ready, self.done = context.Event(), context.Event()
        self.results = context.Queue()
        self.process = context.Process(target=tap_process,
                                       args=(amqp_uri, self.ready, self.done, self.results),
                                       daemon=True)
        self.commands: dict[int, dict] = {}   # order id -> {relayed, tapped}
        self.batches: dict[int, dict] = {}    # taker order id -> {at, relayed, tapped}
        self.tapped_seqs: dict[int, int] = {}  # an engine batch's last_seq -> tapped

    def start(self) -> None:
        self.process.start()
        self.ready.wait(60)

    def stop(self) -> None:
        if self.process.pid is None:
            return
        self.done.set()
        try:
            self.commands, self.batches, self.tapped_seqs = self.results.get(timeout=30)
        finally:
            self.process.join(10)


def tap_process(amqp_uri: str, ready, done, results) -> None:
    import json

    own_cpu_share()

    from kombu import Connection, Consumer, Exchange, Queue

    from services.common.config import COMMANDS_EXCHANGE
    from services.common.events import PUSH_AUDIENCE, unpack
    commands: dict[int, dict] = {}
    batches: dict[int, dict] = {}
    tapped_seqs: dict[int, int] = {}
    queues = [
        Queue(f"push-bench-tap-commands-{uuid.uuid4().hex[:8]}",
              Exchange(COMMANDS_EXCHANGE, type="topic", durable=True),
              routing_key=f"matching.commands.{MARKET}", exclusive=True, durable=False),
        Queue(f"push-bench-tap-engine-{uuid.uuid4().hex[:8]}",
              Exchange("matching.events", type="topic", durable=True),
              routing_key=PUSH_AUDIENCE, exclusive=True, durable=False)]

    def on_message(body, message):
        tapped = now_ms()
        message.ack()
        if isinstance(body, (bytes, str)):
            body = json.loads(body)
        relayed = (message.headers or {}).get("relayed_at")
        key = message.delivery_info["routing_key"]
        if key.startswith("matching.commands."):
            for command in body.get("commands") or [{"id": message.properties.get("message_id")}]:
                kind, _, order_id = str(command.get("id")).partition(":")
                if kind == "place" and order_id.isdigit():
                    commands[int(order_id)] = {"relayed": relayed, "tapped": tapped}
            return
        if body.get("market") != MARKET:
            return
        if isinstance(body.get("last_seq"), int):
            tapped_seqs.setdefault(body["last_seq"], tapped)
        for name, _id, event in unpack(key, message.properties.get("message_id"), body):
            if name == "trade_executed":
                batches.setdefault(int(event["taker_order_id"]), {
                    "at": body.get("at"), "relayed": relayed, "tapped": tapped})

    with Connection(amqp_uri, heartbeat=10) as amqp:
        with Consumer(amqp, queues, callbacks=[on_message], accept=["json"]):
            ready.set()
            while not done.is_set():
                try:
                    amqp.drain_events(timeout=0.5)
                except socket.timeout:
                    amqp.heartbeat_check()
    results.put((commands, batches, tapped_seqs))


def hub_lags(log_dir: Path, count: int, since: float, until: float) -> list[str]:
    """Per gateway: the worst hub lag of each second of the timed window
    (bench/push_gateway.py), its p50 / max, and the CPU the process spent
    in the seconds whose lag was over 100 ms."""
    lines = []
    for index in range(count):
        path = log_dir / f"push-bench-gateway-{index}.hub-lag"
        # at, lag ms, CPU s so far, longest collector pause ms, full collections
        # so far, CPU of the longest full collection so far ms, young
        # collections so far, objects the full collections found unreachable
        # so far, the longest push of the line (wall ms) and the CPU of the
        # most costly (ms) (the last four since session 9: 0 in older lines)
        rows = [(tuple(map(float, line.split())) + (0.0,) * 4)[:10] for line in
                (path.read_text().splitlines() if path.exists() else []) if line.strip()]
        timed = [(n, row) for n, row in enumerate(rows) if n and since <= row[0] <= until]
        young = sum(row[6] - rows[n - 1][6] for n, row in timed)
        found = sum(row[7] - rows[n - 1][7] for n, row in timed)
        push_wall = [row[8] for _n, row in timed]
        push_cpu = [row[9] for _n, row in timed]
        window = [(row[0], row[1], row[2] - rows[n - 1][2], row[3], row[4] - rows[n - 1][4])
                  for n, row in enumerate(rows) if n and since <= row[0] <= until]
        full_cpu = max((row[5] for row in rows if row[0] <= until), default=0.0)
        lags = [lag for _at, lag, _cpu, _gc, _full in window]
        stalled = [cpu for _at, lag, cpu, _gc, _full in window if lag > 100]
        pauses = [pause for _at, _lag, _cpu, pause, _full in window]
        # A line is written once a second has passed: a stalled hub writes fewer.
        lines.append(f"  gateway {index}: worst lag per probe line (about a second each) p50 "
                     f"{percentile(lags, 50):.0f} ms, max {max(lags, default=float('nan')):.0f} "
                     f"ms; {len(stalled)} of {len(lags)} lines over 100 ms, CPU in them "
                     f"{sum(stalled):.2f} s; garbage collector: longest pause per line p50 "
                     f"{percentile(pauses, 50):.1f} ms, max "
                     f"{max(pauses, default=float('nan')):.1f} ms, "
                     f"{sum(full for *_rest, full in window):.0f} full collections (the "
                     f"longest full one of the process so far: {full_cpu:.0f} ms of CPU; "
                     f"{found:.0f} unreachable objects found by them), {young:.0f} young "
                     f"collections; longest push per line p50 {percentile(push_wall, 50):.0f} "
                     f"ms, max {max(push_wall, default=float('nan')):.0f} ms, its CPU p50 "
                     f"{percentile(push_cpu, 50):.0f} ms, max "
                     f"{max(push_cpu, default=float('nan')):.0f} ms")
    return lines


def hop_table(rows: list[tuple[str, list[float]]]) -> list[str]:
    """``name: n, p50, p99`` lines of the per-hop delays."""
    width = max(len(name) for name, _ in rows)
    return [f"  {name:<{width}}  n={len(values):>6}  p50 {percentile(values, 50):>6.0f} ms  "
            f"p99 {percentile(values, 99):>6.0f} ms" for name, values in rows]


def order_hops(flow: dict, tap: EngineTap) -> list[tuple[str, list[float]]]:
    """The order's side of the trace: each taker order that traded, from the
    moment it was due to the engine's push message for its batch."""
    hops = {name: [] for name in ("order due -> answered (acceptance committed)",
                                  "order due -> command relayed (orders' outbox)",
                                  "command relayed -> engine batch (matching consumed)",
                                  "engine batch -> its events relayed (journal commit, "
                                  "matching's outbox)",
                                  "events relayed -> tapped (RabbitMQ)")}
    names = list(hops)
    for order_id, (sent, answered) in flow.get("timings", {}).items():
        command, batch = tap.commands.get(order_id), tap.batches.get(order_id)
        hops[names[0]].append(answered - sent)
        if command and command["relayed"]:
            hops[names[1]].append(command["relayed"] - sent)
            if batch and batch["at"]:
                hops[names[2]].append(batch["at"] - command["relayed"])
        if batch and batch["at"] and batch["relayed"]:
            hops[names[3]].append(batch["relayed"] - batch["at"])
            hops[names[4]].append(batch["tapped"] - batch["relayed"])
    return list(hops.items())


def frame_hops(traces: list[dict], tapped_seqs: dict[int, int]) -> list[tuple[str, list[float]]]:
    """The push side of the trace, per frame a client timed (trades and depth
    alike): the stamps of gateway/bridge.py and gateway/sockets.py."""
    steps = [("at", "relayed", "engine batch -> events relayed"),
             ("relayed", "consumed", "events relayed -> gateway consumed"),
             ("consumed", "pushed", "gateway consumed -> emitted (coalescing)"),
             # Only when the frame came through the message queue (another
             # process's bridge): the market streams come from each gateway's
             # own queue since session 6.
             ("pushed", "received", "emitted -> other gateway got it (message queue)"),
             ("received", "client", "gateway got it -> client (fan-out, socket, client)"),
             ("at", "client", "engine batch -> client (all hops)")]
    rows = []
    for stream in ("trades", "depth"):
        timed = [{**t, "received": t.get("received") or t.get("pushed")}
                 for t in traces if t["stream"] == stream]
        for start, end, name in steps:
            values = [t[end] - t[start] for t in timed if t.get(start) and t.get(end)]
            if start == "pushed" and not any(values):
                continue
            rows.append((f"{stream}: {name}", values))
    # The same engine batch reaching the bench's tap (a plain consumer in
    # this process) and the gateway: a gateway late against the tap waited
    # in its own process (its green threads), not in RabbitMQ.
    rows.append(("depth: bench's tap got the batch -> gateway consumed it",
                 [t["consumed"] - tapped_seqs[t["seq"]] for t in traces
                  if t["stream"] == "depth" and t.get("consumed")
                  and t.get("seq") in tapped_seqs]))
    return rows


def synthetic_flow(amqp_uri: str, channel: str, per_second: float, seconds: float) -> dict:
    """The bridge's output without the services: ``per_second`` trade batches
    and as many depth diffs a second, emitted to the market's rooms through
    the gateways' message queue (as the active bridge emits), each stamped
    with its emit time. Measures the gateways' fan-out alone."""
    import socketio
    manager = socketio.KombuManager(amqp_uri, channel=channel, write_only=True)
    sent, seq = 0, 0
    interval = 1.0 / per_second
    deadline = time.monotonic() + seconds
    next_at = time.monotonic()
    while time.monotonic() < deadline:
        seq += 3
        now = now_ms()
        trades = [{"market": MARKET, "seq": seq - k, "trade_id": f"synthetic-{seq}-{k}",
                   "price": "2000.01", "quantity": "0.0150", "quote_quantity": "30.0002",
                   "taker_side": "buy", "executed_at": now} for k in (1, 0)]
        manager.emit("trades", {"market": MARKET, "trades": trades}, room=f"trades:{MARKET}")
        manager.emit("depth", {"market": MARKET, "first_seq": seq - 2, "last_seq": seq, "at": now,
                               "pushed_at": now,
                               "changes": [{"side": "buy", "price": "1999.99", "quantity": "0.5"},
                                           {"side": "sell", "price": "2000.02",
                                            "quantity": "0"}]},
                     room=f"depth:{MARKET}")
        sent += 2
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    return {"placed": 0, "refused": 0, "emitted": sent}


# The client processes stand in for the traders' own machines, where a
# client never waits for the exchange's cores. Here they share the same two
# cores, and at the default share the last hop (gateway -> client) was mostly
# the bench's own four client processes waiting for a core: in the same
# window p99 96-124 ms at 0 against 48-54 ms at -5, while the exchange's own
# hops were not helped (their CPU comes out of the same two cores).
# bench/README.md "Quiet-machine runs after session 11" has both; 0 gives
# every process the same share.
CLIENT_NICE = -5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--gateways", type=int, default=2)
    parser.add_argument("--rate", type=float, default=100.0, help="orders per second")
    parser.add_argument("--threads", type=int, default=32,
                        help="callers taking the due orders (the flow is open-loop)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--batched", action="store_true",
                        help="place the due orders in orders.place_orders batches, as the "
                             "gateway's order batcher does (default: one place_order each)")
    parser.add_argument("--sample", type=int, default=10,
                        help="one connection in this many decodes and times its frames")
    parser.add_argument("--synthetic", type=float, metavar="PER_S",
                        help="no orders: emit PER_S trade batches and depth diffs a second "
                             "straight into the gateways' message queue (the fan-out alone)")
    parser.add_argument("--gateway-nice", type=int, default=None, metavar="N",
                        help="start the bench's gateways at this CPU niceness (their "
                             "sessions' too; below 0 needs root); default: the stack's "
                             "gateway's (stack/proc.py CPU_NICE, EXCHANGE_CPU_NICE)")
    parser.add_argument("--client-nice", type=int, default=CLIENT_NICE, metavar="N",
                        help="the same for the client processes (the traders' side, which "
                             "in production is not on this machine); default %(default)s, "
                             "0 = the same share as every other process")
    parser.add_argument("--profile", metavar="DIR",
                        help="record each gateway with py-spy during the timed window "
                             "(flame graphs DIR/push-gateway-<n>.svg)")
    args = parser.parse_args()
    if args.gateway_nice is None:
        # The bench's gateways are the product's: the same CPU share as `make up` gives its own.
        from stack.proc import cpu_nice
        args.gateway_nice = cpu_nice("gateway")
    from stack.proc import can_lower_niceness
    if not can_lower_niceness(min(args.gateway_nice, args.client_nice)):
        # os.nice would refuse and the processes not start.
        print("no CAP_SYS_NICE (not root, or a container's root): gateways and clients at "
              "niceness 0 (the figures then include the clients' wait for a core; see "
              "CLIENT_NICE)")
        args.gateway_nice = max(args.gateway_nice, 0)
        args.client_nice = max(args.client_nice, 0)

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

    load_before = os.getloadavg()[0]
    channel = f"push-bench-{uuid.uuid4().hex[:8]}" if args.synthetic else None
    gateways = start_gateways(args.gateways, channel, log_dir, args.gateway_nice)
    urls = [url for _process, url in gateways]
    context = multiprocessing.get_context("spawn")
    ready, results = context.Queue(), context.Queue()
    go, stop = context.Event(), context.Event()
    try:
        baseline = {url: rss_kib(process.pid) for process, url in gateways}
        share = [args.connections // args.clients + (1 if i < args.connections % args.clients else 0)
                 for i in range(args.clients)]
        sources = source_addresses(share)
        procs = [context.Process(target=client_process,
                                 args=(i, urls, share[i], args.sample, ready, go, stop, results,
                                       args.client_nice, sources[i]),
                                 daemon=True)
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

        profilers = []
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            py_spy = Path(sys.executable).parent / "py-spy"
            profilers = [subprocess.Popen(
                [str(py_spy), "record", "--pid", str(process.pid), "--duration",
                 str(int(args.seconds)), "--rate", "50", "--nonblocking",
                 "--output", str(Path(args.profile) / f"push-gateway-{n}.svg")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for n, (process, _url) in enumerate(gateways)]
        watched = {**{f"gateway {n}": process.pid for n, (process, _url) in enumerate(gateways)},
                   **{f"clients {n}": proc.pid for n, proc in enumerate(procs)},
                   "order flow (this process)": os.getpid()}
        machine_roles = {**{name: [pid] for name, pid in watched.items()},
                         **stack_processes(settings.run_dir / "pids")}
        machine_before = cpu_snapshot(machine_roles)
        go.set()
        timed_from = time.monotonic()
        timed_from_wall = time.time()
        tap = EngineTap(settings.amqp_uri())
        if args.synthetic:
            flow = synthetic_flow(settings.amqp_uri(), channel, args.synthetic, args.seconds)
        else:
            tap.start()
            flow = order_flow(config, traders, centre, args.rate, args.seconds, args.threads,
                              batched=args.batched)
        time.sleep(2.0)  # the last pushes arrive
        stop.set()
        timed_until_wall = time.time()
        machine_used = cpu_delta(machine_before, cpu_snapshot(machine_roles))
        cpu_used = {name: machine_used[name] for name in watched}
        timed_s = time.monotonic() - timed_from
        for profiler in profilers:
            profiler.wait(60)
        gathered = [results.get(timeout=60) for _ in procs]
        tap.stop()
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
          f"{args.gateways} gateway processes, {args.rate:.0f} orders/s asked for {args.seconds:.0f} s"
          f"{' (place_orders batches)' if args.batched else ' (one place_order each)'}"
          + (f", gateways at nice {args.gateway_nice}" if args.gateway_nice else "")
          + f", clients at nice {args.client_nice}")
    print(f"connections held: {held} (opened in {opened_s:.1f} s), still connected at the end: "
          f"{still}" + (f" (lost while timed: {lost})" if lost else ""))
    print(f"machine load average before: {load_before:.1f}, at the end: "
          f"{os.getloadavg()[0]:.1f} (2 cores)")
    for url in urls:
        grown = (loaded[url] - baseline[url]) / max(1, per_gateway[url])
        print(f"  gateway {url}: {per_gateway[url]} connections, RSS {baseline[url] / 1024:.0f} -> "
              f"{loaded[url] / 1024:.0f} MiB, {grown:.0f} KiB per connection")
    if args.synthetic:
        print(f"synthetic: {flow['emitted']} room emits ({args.synthetic:.0f} trade batches + "
              f"{args.synthetic:.0f} depth diffs a second), no orders")
    timings = flow.get("timings") or {}
    # The flow is due over --seconds; on a machine that cannot keep up its
    # answers take longer, and the rate the order path kept is the lower one.
    kept = ""
    if timings:
        answered_s = (max(a for _s, a in timings.values())
                      - min(s for s, _a in timings.values())) / 1000
        kept = f"; answered within {answered_s:.1f} s: {flow['placed'] / answered_s:.1f}/s"
    print(f"orders placed: {flow['placed']} ({flow['placed'] / args.seconds:.1f}/s over the "
          f"{args.seconds:.0f} s they were due{kept}), "
          f"refused {flow['refused']}, dropped unsent (the callers were behind) "
          f"{flow.get('dropped', 0)}")
    print(f"messages delivered: {messages} in {elapsed:.1f} s = {messages / elapsed:,.0f} msg/s "
          f"(trade batches {sum(r['counts']['trades'] for r in gathered)}, "
          f"depth diffs {sum(r['counts']['depth'] for r in gathered)}); timed on 1 connection "
          f"in {args.sample}")
    print(f"trade commit -> client: {len(trade_delays)} deliveries, "
          f"p50 {percentile(trade_delays, 50):.0f} ms, p99 {percentile(trade_delays, 99):.0f} ms, "
          f"max {max(trade_delays, default=float('nan')):.0f} ms")
    gateway_cpu = sum(v for k, v in cpu_used.items() if k.startswith("gateway"))
    client_cpu = sum(v for k, v in cpu_used.items() if k.startswith("clients"))
    print(f"CPU in the timed window ({timed_s:.1f} s): " + ", ".join(
        f"{name} {used:.1f} s ({100 * used / timed_s:.0f}%)" for name, used in cpu_used.items()))
    print(f"CPU per frame delivered: gateways {1e6 * gateway_cpu / max(1, messages):.0f} us, "
          f"clients {1e6 * client_cpu / max(1, messages):.0f} us")
    for line in machine_cpu_lines(machine_used, timed_s, flow["placed"], messages):
        print(line)
    print(f"book change -> client: {len(depth_delays)} deliveries, "
          f"p50 {percentile(depth_delays, 50):.0f} ms, p99 {percentile(depth_delays, 99):.0f} ms; "
          f"of which commit -> bridge emit p50 {percentile(bridge_delays, 50):.0f} ms, "
          f"p99 {percentile(bridge_delays, 99):.0f} ms, bridge emit -> client (the gateways' "
          f"fan-out) p50 {percentile(fanout_delays, 50):.0f} ms, "
          f"p99 {percentile(fanout_delays, 99):.0f} ms")
    print("per hop (wall-clock ms stamps of one machine; trades' and depth frames' traces "
          "from the timed connections, the order side per taker order that traded):")
    for line in hop_table(order_hops(flow, tap) + frame_hops(
            [t for r in gathered for t in r["traces"]], tap.tapped_seqs)):
        print(line)
    print("gateways' event loop (hub lag: how late a 10 ms sleep woke; a lag without CPU "
          "spent is a wait for a core or a block outside the hub):")
    for line in hub_lags(log_dir, len(gateways), timed_from_wall, timed_until_wall):
        print(line)
    trade_p99 = percentile(trade_delays, 99)
    met = held >= 1000 and still >= 1000 and trade_p99 < 100
    print(f"target (issue 14: >= 1,000 subscribed connections held, trade commit -> client p99 "
          f"< 100 ms): {'MET' if met else 'NOT MET'} ({held} held, {still} at the end, "
          f"p99 {trade_p99:.0f} ms; orders placed {flow['placed'] / args.seconds:.1f}/s of "
          f"{0 if args.synthetic else args.rate:.0f}/s asked; clients at nice {args.client_nice})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
