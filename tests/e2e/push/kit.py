"""Fresh traders and Socket.IO clients for the push and browser tests.

Everything goes through public interfaces of the running (demo) stack:
users.sign_up, the password grant, wallets.credit_deposit as the chain
watcher would, orders.place_order. Usernames are unique per run; the demo
traders are never touched. Test orders stay inside the demo book's spread or
in a market the demo does not seed, so they never trade with demo traders.
"""
from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

import socketio
from nameko.standalone.rpc import ClusterRpcProxy

PASSWORD = "push-Password-local-dev-only-1"
RPC_TIMEOUT = 60


@dataclass
class Trader:
    username: str
    user_id: str
    password: str


def rpc_proxy(settings):
    return ClusterRpcProxy(settings.nameko_config(), timeout=RPC_TIMEOUT)


def access_token(settings, username: str, password: str = PASSWORD) -> str:
    from services.common.identity import backend_openid
    return backend_openid(settings).token(username, password)["access_token"]


def new_trader(settings, funds: dict | None = None, prefix: str = "push") -> Trader:
    username = f"{prefix}-{uuid.uuid4().hex[:10]}"
    with rpc_proxy(settings) as rpc:
        signup = rpc.users.sign_up({"username": username, "email": f"{username}@example.test",
                                    "password": PASSWORD, "first_name": "Push",
                                    "last_name": "Tester"})
        for asset, amount in (funds or {}).items():
            address = rpc.wallets.deposit_address(signup["user_id"], asset)["address"]
            txid = secrets.token_hex(32) if asset == "BTC" else "0x" + secrets.token_hex(32)
            rpc.wallets.credit_deposit(asset, address, amount, txid, 100)
    return Trader(username, signup["user_id"], PASSWORD)


def inside_spread(settings, market: str) -> str:
    """A price on the tick grid strictly between the best bid and best ask."""
    with rpc_proxy(settings) as rpc:
        book = rpc.matching.get_depth(market, 5)
        tick = Decimal(next(m for m in rpc.matching.list_markets()
                            if m["symbol"] == market)["tick_size"])
    bid = Decimal(book["buy"][0][0]) if book["buy"] else None
    ask = Decimal(book["sell"][0][0]) if book["sell"] else None
    reference = Decimal(book["reference_price"] or "30000")
    low = bid if bid is not None else (ask or reference) - 50 * tick
    high = ask if ask is not None else low + 50 * tick
    assert high - low >= 3 * tick, f"no room inside the spread {low}..{high}"
    # Above the best bid by an odd number of ticks: unlikely to share a level.
    price = low + tick * (1 + min(7, int((high - low) / tick) - 2))
    assert low < price < high
    return str(price.quantize(tick))


class Listener:
    """A Socket.IO client that records what it receives (thread-safe)."""

    def __init__(self, url: str, token: str | None = None, events=("depth_snapshot", "depth",
                 "trades", "order", "fill", "balances", "error", "account", "welcome",
                 "ticker", "mini_ticker", "candle")):
        self.url = url
        self.received: list[tuple[str, object]] = []
        self.lock = threading.Condition()
        self.client = socketio.Client(reconnection=False)
        for name in events:
            self.client.on(name, self._recorder(name))
        self.token = token

    def _recorder(self, name):
        def record(data=None):
            with self.lock:
                self.received.append((name, data))
                self.lock.notify_all()
        return record

    def connect(self, wait_timeout: float = 10):
        auth = {"token": self.token} if self.token else None
        self.client.connect(self.url, auth=auth, transports=["websocket"],
                            wait_timeout=wait_timeout)
        return self

    def of(self, name: str) -> list:
        with self.lock:
            return [data for event, data in self.received if event == name]

    def wait_for(self, predicate, timeout: float = 15.0):
        """The first received ``(event, data)`` matching, or None after timeout."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for item in self.received:
                    if predicate(*item):
                        return item
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.lock.wait(min(left, 0.5))

    def call(self, event: str, data, timeout: float = 10):
        return self.client.call(event, data, timeout=timeout)

    def closed_by_the_gateway(self, timeout: float = 10.0) -> bool:
        """Whether the gateway closes this connection within ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.client.connected and time.monotonic() < deadline:
            time.sleep(0.25)
        return not self.client.connected

    def close(self):
        if self.client.connected:
            self.client.disconnect()


class GatewayProcess:
    """A gateway process of the test's own (``python -m gateway`` on a spare
    port) in its own push cluster (``channel``): the test may kill it."""

    def __init__(self, port: int, channel: str, log_path, env: dict | None = None):
        import os
        import subprocess
        import sys
        from services.common.config import REPO_ROOT
        env = {**os.environ, "EXCHANGE_GATEWAY_PORT": str(port), "EXCHANGE_PUSH_CHANNEL": channel,
               "PYTHONPATH": str(REPO_ROOT), **(env or {})}
        self.port = port
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "gateway"], cwd=REPO_ROOT, env=env,
                                        stdout=self.log, stderr=self.log)

    def wait_ready(self, timeout: float = 60.0) -> "GatewayProcess":
        import requests
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"gateway on {self.port} exited"
            try:
                requests.get(self.url + "/api/v1/time", timeout=2)
                return self
            except requests.RequestException:
                time.sleep(0.25)
        raise AssertionError(f"gateway on {self.port} not answering")

    def kill9(self):
        import signal
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except Exception:
                self.process.kill()
        self.log.close()


def free_port() -> int:
    import socket as sockets
    with sockets.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RawSocketIO:
    """A Socket.IO client over a plain TCP socket, speaking Engine.IO 4 over
    a websocket by hand, so that a test decides when it reads (a library
    client reads all the time). ``receive_buffer`` sets SO_RCVBUF before
    connecting: a client that stops reading then fills quickly."""

    def __init__(self, url: str, receive_buffer: int | None = None):
        import socket as sockets
        host, port = url.removeprefix("http://").split(":")
        self.sock = sockets.socket()
        if receive_buffer:
            self.sock.setsockopt(sockets.SOL_SOCKET, sockets.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(30)
        self.sock.connect((host, int(port)))
        key = secrets.token_bytes(16).hex()[:22] + "=="
        self.sock.sendall((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                           f"Host: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            assert chunk, "the gateway closed during the websocket handshake"
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head[:200]
        assert self.frame().startswith("0")  # Engine.IO open
        self.send("40")  # Socket.IO connect to "/"

    def send(self, text: str) -> None:
        """One masked text frame (a client's frames are always masked)."""
        import struct
        payload = text.encode()
        mask = secrets.token_bytes(4)
        length = len(payload)
        header = (struct.pack("!BB", 0x81, 0x80 | length) if length <= 125
                  else struct.pack("!BBH", 0x81, 0x80 | 126, length))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def emit(self, event: str, data) -> None:
        import json
        self.send("42" + json.dumps([event, data]))

    def _read(self, count: int) -> bytes | None:
        while len(self.buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk
        out, self.buffer = self.buffer[:count], self.buffer[count:]
        return out

    def frame(self) -> str | None:
        """The next text frame's payload; None at the end of the stream or on
        the websocket's close frame."""
        import struct
        head = self._read(2)
        if head is None:
            return None
        opcode, length = head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = struct.unpack("!H", self._read(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", self._read(8))[0]
        payload = self._read(length)
        if payload is None or opcode == 0x8:
            return None
        return payload.decode()

    def events_to_end(self, limit: int = 1_000_000) -> list[tuple[str, object]]:
        """Reads until the stream ends: every Socket.IO event received, in
        order (pings are not answered: the gateway has closed or will)."""
        import json
        events = []
        for _ in range(limit):
            try:
                text = self.frame()
            except OSError:
                break
            if text is None:
                break
            if text.startswith("42"):
                events.append(tuple(json.loads(text[2:])[:2]))
            elif text == "1":
                events.append(("engine.io close", None))
        return events

    def close(self) -> None:
        self.sock.close()
