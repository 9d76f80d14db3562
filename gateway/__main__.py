"""Run the gateway: `python -m gateway` (eventlet's WSGI server, Socket.IO enabled).

Serving, and why one process: eventlet.wsgi, the server Flask-SocketIO's
``socketio.run`` runs on eventlet, is its documented production server
(green threads, keep-alive, WebSocket), the same as ``gunicorn -k eventlet
-w 1`` without the extra dependency. More processes would need sticky
sessions: a Socket.IO client on long-polling (the web client's first
transport) sends each request of its session on a new connection, and
gunicorn's or the kernel's (SO_REUSEPORT) balancing may hand it to a process
that does not know the session (Flask-SocketIO deployment docs: "it is not
possible to use more than one worker process" with gunicorn; several
single-worker servers behind an ``ip_hash`` proxy instead). Nothing here is
CPU-bound enough to gain from it either: a request is RPC round trips, and
the services behind it (on the same 2 cores) are the bottleneck
(bench/README.md). Scaling out is several of these processes on their own
ports behind a sticky load balancer (they share the rate-limit counters in
Memcached and the Socket.IO message queue), or websocket-only clients.

So the port is this process's alone: its socket is made here without
SO_REUSEPORT. ``socketio.run`` made it with eventlet's default, which sets
it: a second gateway started on a taken port shared it silently and took
half of the new connections, breaking their Socket.IO sessions. Now that
second gateway exits at once, status 1, "Address already in use", before it
connects to anything (tests/e2e/gateway/test_gateway_port.py).

The socket is served with what ``socketio.run`` passed to
``eventlet.wsgi.server`` (Flask-SocketIO 5.7). ``log_output=False``:
eventlet's access log would write every query string, signatures included;
request ids and errors are logged by the app. ``debug=False``, Flask's and
eventlet's: no traceback ever reaches a client (``socketio.run`` left
eventlet's on, which answers an exception escaping the app with its
traceback). Header names go out as written (``X-MBX-USED-WEIGHT-1M``), not
re-capitalised.
"""
import eventlet

eventlet.monkey_patch()

import logging  # noqa: E402
import resource  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402

import eventlet.wsgi  # noqa: E402
from gateway.app import MAX_CONCURRENT_REQUESTS, create_app  # noqa: E402
from gateway.auth import trusted_proxies  # noqa: E402
from gateway.collector import settle_heap  # noqa: E402
from gateway.connection_limits import Admission, ConnectionLimits, connection_room  # noqa: E402
from gateway.errors import (  # noqa: E402
    headers_too_large_response, request_timeout_response, uri_too_long_response,
)
from gateway.slow_clients import Deadlines, DeadlineInput  # noqa: E402
from services.common import metrics  # noqa: E402
from services.common.config import load_settings  # noqa: E402

KEEPALIVE_IDLE_S = 75


class Protocol(eventlet.wsgi.HttpProtocol):
    """eventlet's, with three changes:

    * headers over its limits are refused with a JSON body like every other
      refusal (``headers_too_large_response``): eventlet answers them with a
      bare 400 that a client's JSON decoding fails on;
    * each phase of reading a request has a deadline (gateway/slow_clients.py:
      a stalled or trickling client cannot hold its connection and WSGI slot
      for good);
    * a trusted proxy's request counts, while it runs, for the client address
      it forwards, against that address's cap on open connections
      (gateway/connection_limits.py; other peers' connections are counted
      by the server's pool, ``Admission.pool``)."""

    deadlines: Deadlines   # set from the settings before serving
    admission: Admission   # likewise
    _counted: str | None = None   # the address the current request counts for

    def _read_request_line(self):
        # eventlet's keepalive bounds each read of the line, not the line:
        # a byte a minute kept it waiting for ever.
        timer = eventlet.Timeout(self.deadlines.request_line_s)
        try:
            return super()._read_request_line()
        except eventlet.Timeout as exc:
            if exc is not timer:
                raise
            self.close_connection = 1
            return ""
        finally:
            timer.cancel()

    def handle_one_request(self):
        try:
            return super().handle_one_request()
        finally:
            if self._counted is not None:
                self.admission.open.give_back(self._counted)
                self._counted = None

    def parse_request(self):
        timer = eventlet.Timeout(self.deadlines.headers_s)
        try:
            if not super().parse_request():
                return False
        except (eventlet.wsgi.HeaderLineTooLong, eventlet.wsgi.HeadersTooLarge):
            self.wfile.write(headers_too_large_response(eventlet.wsgi.MAX_HEADER_LINE,
                                                        eventlet.wsgi.MAX_TOTAL_HEADER_SIZE))
            self.close_connection = 1
            return False
        except eventlet.Timeout as exc:
            if exc is not timer:
                raise
            self.wfile.write(request_timeout_response("headers", self.deadlines.headers_s))
            self.close_connection = 1
            return False
        finally:
            timer.cancel()
        return self._admitted()

    def _admitted(self) -> bool:
        """A trusted proxy's request is counted for its client's address
        (``_counted``, given back when it ends), or refused over the cap."""
        address = self.admission.of_request(self.client_address,
                                            self.headers.get("X-Forwarded-For"))
        if address is None:
            return True
        if not self.admission.open.take(address):
            metrics.CONNECTION_REFUSALS.labels("open").inc()
            self.wfile.write(self.admission.refusal)
            self.close_connection = 1
            return False
        self._counted = address
        return True

    def get_environ(self):
        environ = super().get_environ()
        environ["wsgi.input"] = DeadlineInput(environ["wsgi.input"], self.deadlines.body_s,
                                              on_expiry=self._close_after_answer)
        return environ

    def _close_after_answer(self):
        # Set before the answer's headers are written: eventlet then sends
        # "Connection: close" and never reads the rest of the body.
        self.close_connection = 1


def room_for_connections() -> int:
    """The connections this process serves: ``MAX_CONCURRENT_REQUESTS``,
    its open-files limit raised for them (or fewer, said in the log, where
    the hard limit is too low)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit, connections = connection_room(MAX_CONCURRENT_REQUESTS, soft, hard)
    if limit != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    if connections < MAX_CONCURRENT_REQUESTS:
        logging.getLogger("gateway").warning(
            "serving at most %d connections, not %d: the open-files limit is %d "
            "(raise the hard RLIMIT_NOFILE, e.g. LimitNOFILE, for more)",
            connections, MAX_CONCURRENT_REQUESTS, limit)
    return connections


def listen(host: str, port: int):
    """The listening socket, SO_REUSEADDR (a restart binds at once over the
    old connections in TIME_WAIT) but not SO_REUSEPORT (module docstring)."""
    family, _type, _proto, _name, address = socket.getaddrinfo(host, port)[0]
    return eventlet.listen(address, family, reuse_port=False)


if __name__ == "__main__":
    settings = load_settings()
    host, port = settings.host, settings.int("EXCHANGE_GATEWAY_PORT")
    try:
        listener = listen(host, port)
    except OSError as exc:
        sys.exit(f"gateway: cannot listen on {host}:{port}: {exc.strerror or exc}")
    app = create_app(settings)
    app.debug = False
    # Full collections stop the whole process, every push connection's
    # frames included: fewer and shorter (gateway/collector.py).
    settle_heap()
    # A request line over the server's limit is refused by eventlet before
    # any route: with a JSON {code, msg} body (gateway/errors.py).
    eventlet.wsgi.RESPONSE_414 = uri_too_long_response(eventlet.wsgi.MAX_REQUEST_LINE)
    Protocol.deadlines = Deadlines.from_settings(settings)
    # One client address's share of the pool's connections is capped
    # (gateway/connection_limits.py): the pool counts each connection.
    Protocol.admission = Admission(
        ConnectionLimits.from_settings(settings).per_address, trusted_proxies(app),
        room_for_connections())
    eventlet.wsgi.server(listener, app, protocol=Protocol,
                         log_output=False, custom_pool=Protocol.admission.pool,
                         keepalive=KEEPALIVE_IDLE_S, debug=False,
                         capitalize_response_headers=False,
                         socket_timeout=Protocol.deadlines.idle_s)
