"""Flask application factory for the gateway."""
from __future__ import annotations

from eventlet import GreenPool
from flask import Flask, jsonify
from flask_socketio import SocketIO
from nameko.standalone.rpc import ClusterRpcProxy

from services.common import health
from services.common.config import Settings, load_settings, service_names

socketio = SocketIO(async_mode="eventlet")


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    app = Flask(__name__)
    app.config["SETTINGS"] = settings
    rpc_config = settings.nameko_config()

    def rpc_proxy_factory():
        return ClusterRpcProxy(rpc_config, timeout=health.PROBE_TIMEOUT)

    @app.get("/health")
    def get_health():
        """Each dependency and service, up or down with its latency; 503 when a
        required one is down."""
        pool = GreenPool(16)
        probes = health.probe_all(settings, rpc_proxy_factory, service_names(), pool.imap)
        healthy = all(p.up for p in probes if p.required)
        body = {"status": "up" if healthy else "down",
                "components": [p.as_dict() for p in probes]}
        return jsonify(body), 200 if healthy else 503

    socketio.init_app(app)
    return app
