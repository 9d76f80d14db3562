"""The operations dashboard, served by the gateway for people with the realm
role ``admin`` (Grafana cannot be installed here; docs/operations.md).

- ``GET /ops``: the page (monitoring/dashboard/), which signs in through
  Keycloak with the trader client's module (/app/signin.js) and draws its charts with the same chart
  library (lightweight-charts, /vendor/).
- ``GET /api/v1/ops/dashboard?minutes=N``: every panel's series over the last
  N minutes, from Prometheus's HTTP API (``query_range``), and the alerts
  firing in Alertmanager. Bearer token of an admin only (401 / 403).

The panels' PromQL lives here (``PANELS``), not in the page: a caller cannot
send Prometheus arbitrary (or arbitrarily expensive) queries through the
gateway.
"""
from __future__ import annotations

import math
import time

import requests
from flask import Blueprint, abort, current_app, jsonify, request

from frontend_api.serving import serve_page_file
from gateway.errors import ApiError
from services.common.config import REPO_ROOT
from services.common.tokens import InvalidToken

PAGE_DIR = REPO_ROOT / "monitoring" / "dashboard"
PAGE_FILES = {"ops.js", "ops.css"}
ADMIN_ROLE = "admin"
MAX_MINUTES = 24 * 60
QUERY_TIMEOUT_S = 5
POINTS = 240  # per series: the step follows from the window

# (name, title, unit, PromQL): the golden signals, then the exchange's own figures.
PANELS = [
    ("calls", "RPC calls/s by service", "calls/s",
     "sum by (service) (exchange:entrypoint_calls:rate1m)"),
    ("errors", "Failed calls/s by code", "errors/s",
     "sum by (code) (exchange:entrypoint_errors:rate1m)"),
    ("latency", "RPC p99 latency by service", "s",
     "max by (service) (exchange:entrypoint_latency_seconds:p99_1m)"),
    ("http", "Gateway requests/s by status", "req/s",
     "sum by (status) (rate(exchange_http_responses_total[1m]))"),
    ("settlement", "Settlement lag (oldest unsettled trade)", "s",
     "max(exchange_settlement_lag_seconds)"),
    ("outbox", "Outbox backlog by stream", "rows",
     'max by (stream) (exchange_outbox_backlog{stream!="all"})'),
    ("books", "Orders resting per market", "orders",
     "max by (market) (exchange_engine_book_orders)"),
    ("consumers", "Messages handled/s by queue", "msg/s",
     "exchange:consumer_messages:rate1m"),
    ("parked", "Parked events", "events", "max by (service) (exchange_parked_events)"),
    ("audit", "Ledger audit findings", "findings", "max(exchange_ledger_audit_findings)"),
    ("cache", "Market-data cache hit ratio", "ratio", "exchange:marketdata_cache_hit:ratio5m"),
    ("down", "Targets down", "targets", "count(up == 0) or vector(0)"),
]

blueprint = Blueprint("ops", __name__)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self' {keycloak}; frame-src {keycloak}; "
       "frame-ancestors 'none'; base-uri 'none'; form-action {keycloak}")


@blueprint.get("/ops")
def page():
    return serve_page_file(PAGE_DIR, "ops.html", CSP)


@blueprint.get("/ops/<name>")
def page_file(name: str):
    if name not in PAGE_FILES:
        abort(404)
    return serve_page_file(PAGE_DIR, name, CSP)


def _admin() -> str:
    """The admin's username; 401 without a valid token, 403 without the role."""
    from gateway.tokens import bearer_token, unauthenticated, verifier
    token = bearer_token(request.headers.get("Authorization", ""))
    try:
        principal = verifier().verify(token)
    except InvalidToken as exc:
        raise unauthenticated(exc.code, str(exc)) from None
    if not principal.has_role(ADMIN_ROLE):
        raise ApiError(403, "FORBIDDEN", "the operations dashboard is for admins", -2015)
    return principal.username or principal.subject


def _minutes() -> int:
    raw = request.args.get("minutes", "30")
    # isascii: str.isdigit() also takes "²", which int() refuses.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_MINUTES:
        raise ApiError(400, "INVALID_INPUT", f"minutes must be an integer from 1 to {MAX_MINUTES}",
                       -1100)
    return int(raw)


def _prometheus(settings) -> str:
    return f"http://{settings.host}:{settings['EXCHANGE_PROMETHEUS_PORT']}"


def _series(result: list[dict]) -> list[dict]:
    out = []
    for item in result:
        labels = {k: v for k, v in item["metric"].items() if k != "__name__"}
        label = ", ".join(f"{v}" for _, v in sorted(labels.items())) or "value"
        points = []
        for stamp, value in item["values"]:
            number = float(value)
            if math.isfinite(number):
                points.append([int(stamp), number])
        out.append({"label": label, "points": points})
    return out


@blueprint.get("/api/v1/ops/dashboard")
def dashboard():
    _admin()
    minutes = _minutes()
    settings = current_app.config["SETTINGS"]
    end = time.time()
    start = end - minutes * 60
    step = max(5, int(minutes * 60 / POINTS))
    panels, problems = [], []
    session = requests.Session()
    for name, title, unit, query in PANELS:
        try:
            response = session.get(f"{_prometheus(settings)}/api/v1/query_range", timeout=QUERY_TIMEOUT_S,
                                   params={"query": query, "start": start, "end": end, "step": step})
            response.raise_for_status()
            series = _series(response.json()["data"]["result"])
        except (requests.RequestException, KeyError, ValueError) as exc:
            problems.append(f"{name}: {type(exc).__name__}")
            series = []
        panels.append({"name": name, "title": title, "unit": unit, "series": series})
    alerts = []
    try:
        response = session.get(f"http://{settings.host}:{settings['EXCHANGE_ALERTMANAGER_PORT']}"
                               "/api/v2/alerts", params={"active": "true"}, timeout=QUERY_TIMEOUT_S)
        response.raise_for_status()
        alerts = [{"name": a["labels"].get("alertname"), "severity": a["labels"].get("severity"),
                   "summary": a.get("annotations", {}).get("summary", ""),
                   "since": a.get("startsAt")} for a in response.json()]
    except (requests.RequestException, ValueError) as exc:
        problems.append(f"alerts: {type(exc).__name__}")
    return jsonify({"minutes": minutes, "step": step, "panels": panels, "alerts": alerts,
                    "problems": problems})
