"""What one client address may hold of a gateway process, and how often it
may open a live push connection.

A process serves at most ``MAX_CONCURRENT_REQUESTS`` connections at once
(5,000, fewer where it may not open the files: ``connection_room``;
eventlet's pool: a connection holds its slot from its accept to its close,
idle keep-alive waits included, and a Socket.IO WebSocket or long poll for
its whole life). Nothing capped one client's share: about 1,000 WebSockets
from one address, opened in seconds from one machine, shut the gateway for
everyone on one box (``make up``: no proxy in front). In the zones an edge
HAProxy caps each address (100 open, 1,000 new per 10 s: ansible/); these
hold on one box too, and behind any proxy.

The defaults (config/defaults.env) let one address hold 2,000 connections
and open 3,000 live push connections per 5 minutes: the 1,000 subscribed
connections one box must hold (bench/push_bench.py, or any load from one
machine) fit, as do the many clients behind one NAT address, and one
address still leaves a process 3,000 connections for everyone else. Binance
allows 300 WebSocket attempts per 5 minutes; our Socket.IO is not its API,
and at 300 a single machine could not open the 1,000 it must hold.

* **Open connections per client address, per process**
  (``EXCHANGE_GATEWAY_CONNECTIONS_PER_ADDRESS``; 0: no cap). The address is
  gateway/auth.py's ``resolve_client_ip``, an IPv6 one's /64 network
  (``limits_address``: a client has all of it to send from):

  - a peer that is not a trusted proxy is the client: each of its
    connections counts from its accept to its close. One over the cap never
    takes a slot of the server's pool: a small pool of its own
    (``REFUSING_AT_ONCE``) reads its request's head for at most
    ``REFUSAL_S``, answers 429 ``TOO_MANY_CONNECTIONS`` (the JSON body of
    every refusal made before a route: Binance's ``{code: -1003, msg}`` and
    the native ``error``) and closes it. While that pool is full (a flood
    from one address), a connection over the cap is closed unanswered;
  - a trusted proxy (``EXCHANGE_GATEWAY_TRUSTED_PROXIES``) carries many
    clients, and HAProxy hands its idle server connections to other
    clients' requests: its connections are not counted as the proxy's. Each
    of its requests counts for the forwarded address while it runs (a
    WebSocket's request runs as long as the connection); one over the cap
    is answered the same 429 and its connection closed.

  A connection gives its slot back when the green thread serving it ends,
  however it ends (a ``finally``: a close, a reset, a timeout, an error).
  The cost per connection is a dict lookup at its accept and at its end.
* **Socket.IO connection attempts per client address, across processes**:
  at most ``EXCHANGE_GATEWAY_SOCKET_ATTEMPTS`` per
  ``EXCHANGE_GATEWAY_SOCKET_ATTEMPTS_WINDOW_S`` seconds (0: no limit), as
  Binance limits its WebSocket API per IP (its 300 per 5 minutes are too
  few here: below). An attempt is an Engine.IO handshake: a GET of ``/socket.io``
  without a session id (a long poll's next request and the WebSocket upgrade
  of a session carry one). Counted in the rate limits' Memcached counters
  (gateway/ratelimit.py ``Counters``: exact within a process, up to a second
  late across processes; Memcached unreachable: not limited), on handshakes
  only. Every attempt counts, refused ones too (Binance counts attempts).
  Over the limit: 429 ``TOO_MANY_CONNECTION_ATTEMPTS`` with ``Retry-After``
  (the seconds left in the window), before Engine.IO sees the request.
"""
from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

import eventlet
from eventlet import greenio

from gateway.auth import limits_address, resolve_client_ip
from gateway.errors import too_many_connection_attempts_body, too_many_connections_response
from services.common import metrics

# Refusals of connections over their address's cap under way at once, each
# at most twice REFUSAL_S. Their own pool: a client over its cap never takes
# one of the server's slots, even for the moment of its refusal.
REFUSING_AT_ONCE = 50
# How long a refused connection has to send its request's head, and then to
# read the answer and close: a client's request is read before it is
# answered and the answer written before the close (a close with its
# request unread would reset the connection, and the client could lose the
# answer to the reset). A client silent that long is answered all the same.
REFUSAL_S = 1.0
REQUEST_HEAD_MAX = 16 * 1024
# Two documentation addresses (RFC 5737): ``proxy_peer`` asks
# resolve_client_ip whether it would believe a peer's X-Forwarded-For.
_MARKERS = ("192.0.2.1", "192.0.2.2")


@dataclass(frozen=True)
class ConnectionLimits:
    """Numbers; their values are config/defaults.env's."""
    per_address: int            # open connections per client address and process; 0: no cap
    attempts: int               # Socket.IO connection attempts per address and window; 0: none
    attempts_window_s: int

    @classmethod
    def from_settings(cls, settings) -> "ConnectionLimits":
        """``EXCHANGE_GATEWAY_CONNECTIONS_PER_ADDRESS``,
        ``EXCHANGE_GATEWAY_SOCKET_ATTEMPTS`` (whole numbers, 0 or more) and
        ``EXCHANGE_GATEWAY_SOCKET_ATTEMPTS_WINDOW_S`` (seconds, above 0)."""
        values = []
        for key, least in (("EXCHANGE_GATEWAY_CONNECTIONS_PER_ADDRESS", 0),
                           ("EXCHANGE_GATEWAY_SOCKET_ATTEMPTS", 0),
                           ("EXCHANGE_GATEWAY_SOCKET_ATTEMPTS_WINDOW_S", 1)):
            raw = (settings.get(key) or "").strip()
            if not raw.isdigit() or int(raw) < least:
                raise ValueError(f"{key} must be a whole number of at least {least}, not {raw!r}")
            values.append(int(raw))
        return cls(*values)


# ------------------------------------------------------------------ the process's room (pure)

# File descriptors a gateway process needs besides its connections' own: its
# RabbitMQ connections, logs, the listener, eventlet's hub.
FILES_BESIDES_CONNECTIONS = 256
# A connection's files: its socket, and the Memcached connection a request
# holds while it runs (gateway/ratelimit.py ``counters_client``).
FILES_PER_CONNECTION = 2


def connection_room(wanted: int, soft: int, hard: int) -> tuple[int, int]:
    """(the open-files limit to set, the connections to serve) for a
    process that wants ``wanted`` connections under RLIMIT_NOFILE
    ``soft``/``hard`` (negative: unlimited, as ``resource.RLIM_INFINITY``).
    The soft limit is raised as far as needed and allowed (many systems
    start processes at 1,024 with a far higher hard limit); where even the
    hard limit is too low the process serves fewer connections rather than
    failing its accepts with EMFILE."""
    needed = FILES_BESIDES_CONNECTIONS + FILES_PER_CONNECTION * wanted
    if soft < 0 or soft >= needed:
        return soft, wanted
    limit = needed if hard < 0 else max(soft, min(needed, hard))
    return limit, max(1, min(wanted, (limit - FILES_BESIDES_CONNECTIONS) // FILES_PER_CONNECTION))


# ------------------------------------------------------------------ the counts (pure)

class OpenConnections:
    """Open connections per address, against one cap (0: none). Only
    addresses holding some are kept."""

    def __init__(self, cap: int):
        self.cap = cap
        self._held: dict[str, int] = {}

    def take(self, address: str) -> bool:
        """Count one more for ``address``; False (nothing counted) at the cap."""
        held = self._held.get(address, 0)
        if self.cap and held >= self.cap:
            return False
        self._held[address] = held + 1
        return True

    def give_back(self, address: str) -> None:
        held = self._held.get(address, 0) - 1
        if held > 0:
            self._held[address] = held
        else:
            self._held.pop(address, None)

    def held(self, address: str) -> int:
        return self._held.get(address, 0)

    def addresses(self) -> int:
        return len(self._held)


def proxy_peer(peer: str, proxies: tuple) -> bool:
    """Whether ``peer`` is a trusted proxy: resolve_client_ip (the one rule)
    believes its X-Forwarded-For exactly then (two markers: an untrusted
    peer answers itself, which is at most one of them)."""
    return bool(proxies) and all(resolve_client_ip(peer, marker, proxies) == marker
                                 for marker in _MARKERS)


def socket_attempt(environ) -> bool:
    """Whether a WSGI request is a Socket.IO connection attempt: an
    Engine.IO handshake, a GET of /socket.io without a session id."""
    if environ.get("REQUEST_METHOD") != "GET" or \
            not environ.get("PATH_INFO", "").startswith("/socket.io"):
        return False
    query = environ.get("QUERY_STRING", "")
    return "sid" not in urllib.parse.parse_qs(query) if "sid=" in query else True


# ------------------------------------------------------------------ open connections (eventlet)

class Admission:
    """The open connections' cap as the server applies it: ``pool`` admits
    connections (``eventlet.wsgi.server``'s ``custom_pool``), ``request`` a
    trusted proxy's requests (gateway/__main__.py's Protocol)."""

    def __init__(self, per_address: int, proxies: tuple, pool_size: int):
        self.open = OpenConnections(per_address)
        self.proxies = proxies
        self.pool = AdmittingPool(pool_size, self)
        self.refusal = too_many_connections_response(per_address)

    def of_connection(self, client_addr) -> str | None:
        """The address a new connection counts for; None: not counted (no
        cap, or a trusted proxy's: its requests are)."""
        if not self.open.cap:
            return None
        peer = client_addr[0] if isinstance(client_addr, tuple) else ""
        if proxy_peer(peer, self.proxies):
            return None
        return limits_address(resolve_client_ip(peer, None, self.proxies))

    def of_request(self, client_addr, forwarded_for: str | None) -> str | None:
        """The address a request counts for: only a trusted proxy's."""
        if not self.open.cap:
            return None
        peer = client_addr[0] if isinstance(client_addr, tuple) else ""
        if not proxy_peer(peer, self.proxies):
            return None
        return limits_address(resolve_client_ip(peer, forwarded_for, self.proxies))


class AdmittingPool(eventlet.GreenPool):
    """The server's pool of connection green threads (``size``: its
    ``max_size``), which counts each connection for its address and gives
    it back when its green thread ends. A connection over its address's cap
    is refused in a pool of its own (module docstring)."""

    def __init__(self, size: int, admission: Admission):
        super().__init__(size)
        self.admission = admission
        self.refusing = eventlet.GreenPool(REFUSING_AT_ONCE)

    def spawn(self, function, conn_state, *args, **kwargs):
        # eventlet.wsgi.server: spawn(serv.process_request, [addr, socket, state]),
        # then links its own close of the socket to the returned green thread.
        address = self.admission.of_connection(conn_state[0])
        if address is None:
            return super().spawn(function, conn_state, *args, **kwargs)
        opened = self.admission.open
        if not opened.take(address):
            if self.refusing.free():
                metrics.CONNECTION_REFUSALS.labels("open").inc()
                return self.refusing.spawn(refuse, conn_state[1], self.admission.refusal)
            metrics.CONNECTION_REFUSALS.labels("dropped").inc()
            return eventlet.spawn(_nothing)   # the server's link closes the socket
        try:
            return super().spawn(_serving, opened, address, function, conn_state,
                                 *args, **kwargs)
        except BaseException:
            opened.give_back(address)
            raise


def _serving(opened: OpenConnections, address: str, function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    finally:
        opened.give_back(address)


def _nothing():
    return None


def refuse(sock, answer: bytes, within_s: float = REFUSAL_S) -> None:
    """Read the request's head (or what comes of it within ``within_s``),
    write ``answer``, end the sending side and read what the client still
    sends until it closes (within ``within_s`` again). The server closes the
    socket after (its link on this green thread)."""
    if _within(within_s, _read_head, sock):
        _within(within_s, _answer, sock, answer)


def _read_head(sock) -> None:
    head = b""
    while b"\r\n\r\n" not in head and len(head) < REQUEST_HEAD_MAX:
        chunk = sock.recv(4096)
        if not chunk:
            return
        head += chunk


def _answer(sock, answer: bytes) -> None:
    sock.sendall(answer)
    greenio.shutdown_safe(sock)   # the answer, then the end of it
    for _ in range(64):           # what is left of a body: not left unread
        if not sock.recv(4096):
            return


def _within(seconds: float, step, *args) -> bool:
    """``step(*args)``, cut at ``seconds``; False when the client went away."""
    timer = eventlet.Timeout(seconds)
    try:
        step(*args)
    except eventlet.Timeout as exc:
        if exc is not timer:
            raise
    except OSError:
        return False              # reset or gone: nothing to answer
    finally:
        timer.cancel()
    return True


# ------------------------------------------------------------------ Socket.IO attempts (WSGI)

def guard_attempts(wsgi_app, limits: ConnectionLimits, counters, proxies: tuple):
    """WSGI in front of Socket.IO: each connection attempt is counted for its
    client address in ``counters`` (gateway/ratelimit.py ``Counters``) and
    one over ``limits.attempts`` in its window is answered 429 here."""
    if not limits.attempts:
        return wsgi_app
    window = limits.attempts_window_s
    body = too_many_connection_attempts_body(limits.attempts, window)

    def guarded(environ, start_response):
        if socket_attempt(environ):
            address = limits_address(resolve_client_ip(environ.get("REMOTE_ADDR", ""),
                                                       environ.get("HTTP_X_FORWARDED_FOR"), proxies))
            made, left = counters.add(f"sio:ip:{address}", window, 1)
            if made > limits.attempts:
                metrics.CONNECTION_REFUSALS.labels("attempts").inc()
                start_response("429 Too Many Requests",
                               [("Content-Type", "application/json"),
                                ("Content-Length", str(len(body))), ("Retry-After", str(left))])
                return [body]
        return wsgi_app(environ, start_response)
    return guarded
