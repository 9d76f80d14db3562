"""Run the gateway: `python -m gateway` (eventlet's WSGI server, Socket.IO enabled).

Serving, and why one process: Flask-SocketIO's ``socketio.run`` on eventlet
is its documented production server (eventlet.wsgi: green threads, keep-alive,
WebSocket), the same as ``gunicorn -k eventlet -w 1`` without the extra
dependency. More processes would need sticky sessions: a Socket.IO client on
long-polling (the web client's first transport) sends each request of its
session on a new connection, and gunicorn's or the kernel's (SO_REUSEPORT)
balancing may hand it to a process that does not know the session
(Flask-SocketIO deployment docs: "it is not possible to use more than one
worker process" with gunicorn; several single-worker servers behind an
``ip_hash`` proxy instead). Nothing here is CPU-bound enough to gain from it
either: a request is RPC round trips, and the services behind it (on the
same 2 cores) are the bottleneck (bench/README.md). Scaling out is several
of these processes on their own ports behind a sticky load balancer (they
share the rate-limit counters in Memcached and the Socket.IO message queue),
or websocket-only clients.

``log_output=False``: eventlet's access log would write every query string,
signatures included; request ids and errors are logged by the app.
``debug=False``: no traceback ever reaches a client. Header names go out as
written (``X-MBX-USED-WEIGHT-1M``), not re-capitalised.
"""
import eventlet

eventlet.monkey_patch()

import eventlet.wsgi  # noqa: E402
from gateway.app import MAX_CONCURRENT_REQUESTS, create_app, socketio  # noqa: E402
from gateway.collector import settle_heap  # noqa: E402
from gateway.errors import uri_too_long_response  # noqa: E402
from services.common.config import load_settings  # noqa: E402

KEEPALIVE_IDLE_S = 75

if __name__ == "__main__":
    settings = load_settings()
    app = create_app(settings)
    # Full collections stop the whole process, every push connection's
    # frames included: fewer and shorter (gateway/collector.py).
    settle_heap()
    # A request line over the server's limit is refused by eventlet before
    # any route: with a JSON {code, msg} body (gateway/errors.py).
    eventlet.wsgi.RESPONSE_414 = uri_too_long_response(eventlet.wsgi.MAX_REQUEST_LINE)
    socketio.run(app, host=settings.host, port=settings.int("EXCHANGE_GATEWAY_PORT"),
                 log_output=False, max_size=MAX_CONCURRENT_REQUESTS,
                 keepalive=KEEPALIVE_IDLE_S, debug=False, capitalize_response_headers=False)
