"""CORS: browsers may call the gateway only from the web client's origin(s)
(``EXCHANGE_GATEWAY_CORS_ORIGINS``, comma-separated). Any other origin gets
no CORS headers, so the browser refuses to hand it the response; requests
without an ``Origin`` (SDKs, curl) are unaffected. Preflights from an
allowed origin are answered here (204)."""
from __future__ import annotations

from flask import Flask, request

from gateway.ratelimit import USAGE_HEADERS

ALLOWED_HEADERS = "Authorization, Content-Type, X-MBX-APIKEY, X-Request-Id"
ALLOWED_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
EXPOSED_HEADERS = ", ".join(("X-Request-Id", *USAGE_HEADERS, "Retry-After"))


def install(app: Flask, origins: str) -> None:
    allowed = {o.strip().rstrip("/") for o in (origins or "").split(",") if o.strip()}

    @app.before_request
    def preflight():
        if request.method == "OPTIONS" and request.headers.get("Origin") in allowed \
                and request.headers.get("Access-Control-Request-Method"):
            return app.make_response(("", 204))
        return None

    @app.after_request
    def cors_headers(response):
        origin = request.headers.get("Origin")
        response.headers.add("Vary", "Origin")
        if origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            if request.method == "OPTIONS":
                response.headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
                response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
                response.headers["Access-Control-Max-Age"] = "600"
        return response
