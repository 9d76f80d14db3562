"""GET /api/v1/assets shows what the registry lists (its catalogue is the one
home of an asset's decimals, chain, confirmations and withdrawal rules): the
demo assets as the registry's ``get_catalogue`` gives them, and an asset the
test lists itself (a fee, minimum and limit of its own, withdrawals off)
once the gateway's copy is reloaded. Before, no API published the
withdrawal fee or minimum, so a trader could not know them before
withdrawing. Runs against ``settings.gateway_url`` (a gateway of the current
tree: ``EXCHANGE_GATEWAY_PORT=<port of /work/exp/own_gateway.sh>``)."""
import time
import uuid

import requests

from services.registry import errors  # noqa: F401 -- typed refusals back over RPC
from tests.e2e.gateway.native_testkit import rpc_proxy
from tests.integration.registry_kit import asset_spec

RELOAD_S = 30          # the gateway's copy lives 10 s (gateway/markets.py TTL_S)


def as_listed(spec: dict) -> dict:
    """The API's entry for the registry's asset spec."""
    return {"asset": spec["symbol"], "decimals": spec["scale"], "chain": spec["chain"],
            "deposit_confirmations": spec["confirmations"],
            "deposit_enabled": spec.get("deposit_enabled", True),
            "withdraw_enabled": spec.get("withdraw_enabled", True),
            "withdrawal_fee": spec["withdrawal_fee"], "min_withdrawal": spec["min_withdrawal"],
            "daily_withdrawal_limit": spec["daily_withdrawal_limit"]}


def listed(settings) -> dict:
    response = requests.get(f"{settings.gateway_url}/api/v1/assets", timeout=30)
    assert response.status_code == 200, response.text
    return {a["asset"]: a for a in response.json()["assets"]}


def test_every_asset_as_the_registry_lists_it(settings):
    shown = listed(settings)
    # Read after: other tests list assets meanwhile, never unlist one.
    with rpc_proxy(settings) as rpc:
        registry = rpc.registry.get_catalogue()["assets"]
    assert {"BTC", "ETH", "USDT"} <= set(shown) <= set(registry)
    for symbol, entry in shown.items():
        assert entry == as_listed(registry[symbol]), symbol
    one = requests.get(f"{settings.gateway_url}/api/v1/assets/USDT", timeout=30)
    assert one.json() == as_listed(registry["USDT"])


def test_an_asset_just_listed_shows_its_own_withdrawal_rules(settings, operator_token):
    symbol = f"F{uuid.uuid4().hex[:8].upper()}"
    spec = asset_spec(symbol, scale=6, chain="ethereum", confirmations=7,
                      withdrawal_fee="0.123456", min_withdrawal="2.5",
                      daily_withdrawal_limit="12345.000001", withdraw_enabled=False)
    with rpc_proxy(settings) as rpc:
        rpc.registry.list_asset(operator_token, spec)
    deadline, entry = time.monotonic() + RELOAD_S, None
    while entry is None and time.monotonic() < deadline:
        response = requests.get(f"{settings.gateway_url}/api/v1/assets/{symbol}", timeout=30)
        if response.status_code == 200:
            entry = response.json()
        else:
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "UNKNOWN_ASSET"
            time.sleep(1)
    assert entry == as_listed(spec), entry
    assert listed(settings)[symbol] == entry


def test_an_unknown_asset_is_404_naming_the_field(settings):
    response = requests.get(f"{settings.gateway_url}/api/v1/assets/NOSUCH0", timeout=30)
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("UNKNOWN_ASSET", "asset")
