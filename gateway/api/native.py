"""The native API under ``/api/v1``, described by its OpenAPI document."""
from __future__ import annotations

from flask import Blueprint, jsonify

from gateway.rpc import now_ms

blueprint = Blueprint("native", __name__)


@blueprint.get("/time")
def server_time():
    return jsonify({"server_time": now_ms()})
