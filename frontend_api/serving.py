"""Serves the trader web client from the gateway: ``/`` is the app, its ES
modules under ``/app/``, and the few npm packages it imports under
``/vendor/`` (installed by scripts/bootstrap.sh from package-lock.json, never
from a CDN). ``/app/config.json`` tells the page where Keycloak is, and
``/app/signin.js`` is the sign-in module the operations dashboard shares."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, current_app, jsonify, send_from_directory

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
MODULES = HERE / "node_modules"
# The only files of node_modules the page may load: name -> path.
VENDOR = {
    "lightweight-charts.mjs": "lightweight-charts/dist/lightweight-charts.standalone.production.mjs",
    "socket.io.esm.min.js": "socket.io-client/dist/socket.io.esm.min.js",
    "oidc-client-ts.js": "oidc-client-ts/dist/browser/oidc-client-ts.min.js",
}
# The page's own scripts and styles, and what they may reach.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self' {keycloak} ws: wss:; frame-src {keycloak}; frame-ancestors 'none'; "
       "base-uri 'none'; form-action {keycloak}")

blueprint = Blueprint("frontend", __name__)


def serve_page_file(directory: Path, name: str, csp: str):
    """A file of one of the gateway's pages (the trader client, the operations
    dashboard), never cached, with that page's content security policy
    (``{keycloak}`` in ``csp`` stands for Keycloak's origin)."""
    response = send_from_directory(directory, name, max_age=0)
    keycloak = current_app.config["SETTINGS"].keycloak_url
    response.headers["Content-Security-Policy"] = csp.format(keycloak=keycloak)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@blueprint.get("/")
def index():
    return serve_page_file(STATIC, "index.html", CSP)


@blueprint.get("/app/config.json")
def config():
    settings = current_app.config["SETTINGS"]
    return jsonify({"authority": settings.keycloak_issuer,
                    "client_id": settings["EXCHANGE_KEYCLOAK_WEB_CLIENT_ID"]})


@blueprint.get("/app/<path:name>")
def asset(name: str):
    return serve_page_file(STATIC, name, CSP)


@blueprint.get("/vendor/<name>")
def vendor(name: str):
    path = VENDOR.get(name)
    if path is None or not (MODULES / path).exists():
        abort(404)
    return send_from_directory(MODULES, path, max_age=3600)
