"""CORS only for the web client's origin; SDK requests (no Origin) unaffected."""
from flask import Flask

from gateway import cors

WEB = "http://127.0.0.1:18001"


def client():
    app = Flask(__name__)
    cors.install(app, f"{WEB}, http://127.0.0.1:9/")

    @app.get("/api/v3/ping")
    def ping():
        return {}

    return app.test_client()


def test_the_web_clients_origin_is_allowed_and_preflighted():
    c = client()
    response = c.get("/api/v3/ping", headers={"Origin": WEB})
    assert response.headers["Access-Control-Allow-Origin"] == WEB
    assert "X-MBX-USED-WEIGHT-1M" in response.headers["Access-Control-Expose-Headers"]
    preflight = c.options("/api/v3/ping", headers={"Origin": WEB,
                                                   "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204
    assert "X-MBX-APIKEY" in preflight.headers["Access-Control-Allow-Headers"]
    assert c.get("/api/v3/ping", headers={"Origin": "http://127.0.0.1:9"}) \
        .headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:9"


def test_other_origins_get_no_cors_headers():
    c = client()
    for origin in ("http://evil.example", "null", WEB + ".evil.example"):
        response = c.get("/api/v3/ping", headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in response.headers
        preflight = c.options("/api/v3/ping", headers={"Origin": origin,
                                                       "Access-Control-Request-Method": "POST"})
        assert "Access-Control-Allow-Origin" not in preflight.headers
    assert "Access-Control-Allow-Origin" not in c.get("/api/v3/ping").headers
