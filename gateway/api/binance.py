"""The Binance-compatible spot subset under ``/api/v3`` (../shared/BINANCE_SUBSET.md)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from gateway.rpc import now_ms

blueprint = Blueprint("binance", __name__)


@blueprint.get("/ping")
def ping():
    return jsonify({})


@blueprint.get("/time")
def server_time():
    return jsonify({"serverTime": now_ms()})
