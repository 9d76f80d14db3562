"""GET /api/v1/assets publishes the registry's asset facts (services/common/
catalogue.py ``AssetInfo``, their one home) so a trader knows the withdrawal
fee, minimum and daily limit before withdrawing: wallets holds the fee on top
of the amount, and "everything available" was refused with no way to know
why beforehand. Built here from a catalogue of the test's own, served by the
gateway's app (no server needed: the asset list is given its loader)."""
import pytest

from gateway.app import create_app
from gateway.assets import Assets
from gateway.errors import ApiError
from gateway.ratelimit import Counters, Limits, RateLimiter
from services.common.catalogue import AssetInfo
from tests.unit.gateway.test_binance_ratelimit import DictMemcache

USDT = AssetInfo(symbol="USDT", scale=6, chain="ethereum", confirmations=12,
                 withdrawal_fee="1.5", min_withdrawal="10", daily_withdrawal_limit="500000")
ETH = AssetInfo(symbol="ETH", scale=18, chain="ethereum", confirmations=12,
                withdrawal_fee="0.000000000000000001", min_withdrawal="0.01",
                daily_withdrawal_limit="200", deposit_enabled=False, withdraw_enabled=False)


@pytest.fixture(scope="module")
def client():
    app = create_app()
    # Request weight counted in memory, not in the stack's Memcached.
    app.extensions["rate_limiter"] = RateLimiter(Counters(DictMemcache()),
                                                 Limits.from_settings(app.config["SETTINGS"]))
    app.extensions["asset_list"] = Assets(lambda: [USDT, ETH])
    return app.test_client()


def test_every_listed_asset_with_its_withdrawal_rules_as_decimal_strings(client):
    response = client.get("/api/v1/assets")
    assert response.status_code == 200, response.text
    assert response.json == {"assets": [
        {"asset": "ETH", "decimals": 18, "chain": "ethereum", "deposit_confirmations": 12,
         "deposit_enabled": False, "withdraw_enabled": False,
         "withdrawal_fee": "0.000000000000000001", "min_withdrawal": "0.01",
         "daily_withdrawal_limit": "200"},
        {"asset": "USDT", "decimals": 6, "chain": "ethereum", "deposit_confirmations": 12,
         "deposit_enabled": True, "withdraw_enabled": True, "withdrawal_fee": "1.5",
         "min_withdrawal": "10", "daily_withdrawal_limit": "500000"}]}


def test_one_asset_and_an_unknown_one_is_404_in_the_native_shape(client):
    assert client.get("/api/v1/assets/USDT").json["withdrawal_fee"] == "1.5"
    response = client.get("/api/v1/assets/NOPE")
    assert response.status_code == 404
    error = response.json["error"]
    assert (error["code"], error["field"]) == ("UNKNOWN_ASSET", "asset") and error["request_id"]
    assert client.get("/api/v1/assets/not-one").status_code == 400


def test_the_document_declares_both(client):
    paths = client.get("/api/v1/openapi.json").json["paths"]
    assert "/api/v1/assets" in paths and "/api/v1/assets/{asset}" in paths


def test_a_registry_never_read_is_503_and_a_failed_reload_serves_the_copy():
    now, fail = [0.0], [True]

    def load():
        if fail:
            raise OSError("registry down")
        return [USDT]

    listed = Assets(load, ttl_s=10, clock=lambda: now[0])
    with pytest.raises(ApiError) as caught:
        listed.all()
    assert (caught.value.status, caught.value.code) == (503, "UNAVAILABLE")
    fail.clear()
    assert listed.get("USDT") is USDT
    fail.append(True)
    now[0] = 60.0
    assert [a.symbol for a in listed.all()] == ["USDT"]
