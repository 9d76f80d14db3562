"""Flask application factory for the gateway.

Layout (one module per concern):

* ``gateway/rpc.py``      pooled Nameko proxies; every call carries the deadline and request id;
* ``gateway/errors.py``   the one error table (service code -> HTTP status, native and Binance bodies);
* ``gateway/api/binance.py``  the Binance-compatible subset under ``/api/v3``;
* ``gateway/api/native.py``   the native API under ``/api/v1`` and its OpenAPI document;
* ``gateway/sockets.py``  Socket.IO live push.

Every response carries ``X-Request-Id`` (the client's when it sent a sane
one, else a new one), and every log line of the request carries it too.
"""
from __future__ import annotations

import logging
import re
import uuid

from eventlet import GreenPool
from flask import Flask, g, jsonify, request
from flask_socketio import SocketIO
from werkzeug.exceptions import HTTPException

from gateway import errors
from gateway.jsonbody import StrictJSONProvider
from gateway.rpc import RpcPool, TRANSPORT_FAILURES, now_ms
from services.common import health, json_codec, logs
from services.common.config import Settings, load_settings, service_names
from services.common.metrics import instrument_flask

log = logging.getLogger("gateway")

socketio = SocketIO(async_mode="eventlet")

REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
MAX_BODY_BYTES = 64 * 1024
# Connections (green threads) a process serves at once; beyond it connections
# wait in the listen backlog. A live push connection holds one for its life,
# so this is also the push connections a process can hold: well over the
# 1,000 subscribed connections one box must hold, from one client address
# too (config/defaults.env, EXCHANGE_GATEWAY_CONNECTIONS_PER_ADDRESS: one
# address takes at most 2,000, so it never takes them all). A connection
# costs about 70 KiB (bench/README.md, "Live push") and up to two file
# descriptors (its socket, and a request's Memcached connection): fewer when
# the process may not open that many files (gateway/connection_limits.py
# ``connection_room``). Per-request pools (rate-limit counters) are this size.
MAX_CONCURRENT_REQUESTS = 5000


def request_id() -> str:
    return getattr(g, "request_id", "-")


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every log record made while serving it."""

    def filter(self, record):
        try:
            record.request_id = request_id()
        except RuntimeError:  # outside a request
            record.request_id = "-"
        return True


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    json_codec.install()                         # its RPC messages, as the services'
    app = Flask(__name__)
    app.json = StrictJSONProvider(app)           # gateway/jsonbody.py
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    rpc_config = settings.nameko_config()
    app.extensions["rpc_pool"] = RpcPool(rpc_config, size=settings.int("EXCHANGE_GATEWAY_RPC_POOL"),
                                         default_deadline_s=float(settings["EXCHANGE_RPC_TIMEOUT"]))
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())

    def rpc_proxy_factory():
        # A pooled proxy: a fresh ClusterRpcProxy declared and deleted a reply
        # queue per service per /health. The edge HAProxy asks every gateway
        # every few seconds, and in a RabbitMQ cluster each declaration is a
        # transaction of every node: a node booting after a partition (zone
        # drill) waited minutes behind them for its own schema transaction.
        return app.extensions["rpc_pool"].lease(
            deadline_ms=now_ms() + int(health.PROBE_TIMEOUT * 1000))

    @app.before_request
    def assign_request_id():
        sent = request.headers.get("X-Request-Id", "")
        g.request_id = sent if REQUEST_ID.fullmatch(sent) else uuid.uuid4().hex
        g.received_ms = now_ms()
        # Every JSON log line written while serving it names the request,
        # the traceback of an unexpected failure included (the request's
        # greenthread may have served another on the same connection).
        logs.unbind()
        logs.bind(request_id=g.request_id)

    @app.teardown_request
    def unbind_request_id(_exc):
        logs.unbind()

    @app.after_request
    def stamp_request_id(response):
        response.headers["X-Request-Id"] = request_id()
        return response

    @app.errorhandler(errors.ApiError)
    def api_error(exc: errors.ApiError):
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 408: "REQUEST_TIMEOUT",
                413: "REQUEST_TOO_LARGE"}.get(exc.code, "BAD_REQUEST")
        binance = {404: -1000, 405: -1000, 408: -1000, 413: -1100}.get(exc.code, -1100)
        return error_response(errors.ApiError(exc.code or 400, code, exc.description or code,
                                              binance))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        if isinstance(exc, TRANSPORT_FAILURES):
            return error_response(errors.timeout_error())
        refusal = errors.from_service_error(exc)
        if refusal is not None:
            return error_response(refusal)
        log.exception("unexpected failure serving %s %s", request.method, request.path)
        return error_response(errors.internal_error())

    @app.get("/health")
    def get_health():
        """Each dependency and service, up or down with its latency; 503 only
        when the exchange cannot take orders, ``degraded`` with 200 when a
        part it can do without is down (services.common.health.verdict)."""
        pool = GreenPool(16)
        probes = health.probe_all(settings, rpc_proxy_factory, service_names(), pool.imap)
        status, http_status = health.verdict(probes)
        return jsonify({"status": status, "components": [p.as_dict() for p in probes]}), http_status

    @app.get("/health/live")
    def get_liveness():
        """This process answers HTTP: what a load balancer in front of
        several gateways asks. Not /health: its verdict rests on what every
        gateway shares (the PostgreSQL leader, each service), so while one of
        those fails it fails on every gateway at once, and the edge took
        every gateway out and kept them out (zones drill of 2026-12-05:
        90 s without orders). A gateway that cannot reach something answers
        each request with a coded error that clients retry."""
        return jsonify({"status": "live"}), 200

    from gateway import cors
    cors.install(app, settings.get("EXCHANGE_GATEWAY_CORS_ORIGINS", ""))
    register_apis(app)
    from gateway import sockets
    sockets.init_app(app, socketio, settings, lambda: app.extensions["rpc_pool"].lease())
    instrument_flask(app)
    return app


def register_apis(app: Flask) -> None:
    """Each API is a blueprint in its own module."""
    from gateway.api import binance, native
    app.register_blueprint(binance.blueprint, url_prefix="/api/v3")
    app.register_blueprint(binance.sapi, url_prefix="/sapi/v1")
    app.register_blueprint(native.blueprint, url_prefix="/api/v1")
    from frontend_api import serving
    app.register_blueprint(serving.blueprint)
    from gateway import ops  # the operations dashboard (admins)
    app.register_blueprint(ops.blueprint)


def error_response(exc: errors.ApiError):
    """The refusal in the format of the API the request was for."""
    g.error_code = exc.code  # the native code for the metrics: a Binance body has a number
    if request.path.startswith(("/api/v3", "/sapi/v1")):
        body = exc.binance_body()
    else:
        body = exc.native_body(request_id())
    response = jsonify(body)
    response.status_code = exc.status
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


def rpc(app: Flask | None = None, deadline_ms: int | None = None):
    """The request's lease on a pooled proxy: ``with rpc() as services: ...``."""
    from flask import current_app
    pool: RpcPool = (app or current_app).extensions["rpc_pool"]
    return pool.lease(deadline_ms, request_id())
