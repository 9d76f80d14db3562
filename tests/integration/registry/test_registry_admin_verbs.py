"""Each admin verb of the registry (list an asset, list a market, update a
market, halt and resume a market, announce a definition again, read the
journal) called without credentials, with a garbage token,
with a trader's token and with the backend's service-account token: refused
with its code and nothing listed or journaled; with an admin's token:
accepted (issue 11). The admin's listing, update and delisting are
test_registry_listing.py::test_listing_is_validated_journaled_announced_and_idempotent."""
import psycopg
import pytest

from services.common.errors import CodedError
from tests.integration.registry.conftest import new_asset_symbol
from tests.integration.registry_kit import asset_spec, market_spec

VERBS = {
    "list_asset": lambda rpc, token, symbol: rpc.list_asset(token, asset_spec(symbol)),
    "list_market": lambda rpc, token, symbol: rpc.list_market(
        token, market_spec(f"{symbol}-USDT")),
    "update_market": lambda rpc, token, symbol: rpc.update_market(
        token, "BTC-USDT", {"status": "halted"}),
    "halt_market": lambda rpc, token, symbol: rpc.halt_market(token, "BTC-USDT"),
    "resume_market": lambda rpc, token, symbol: rpc.resume_market(token, "BTC-USDT"),
    "announce": lambda rpc, token, symbol: rpc.announce(token, "BTC-USDT"),
    "journal": lambda rpc, token, symbol: rpc.journal(token, 5),
}


def journal_size(settings) -> int:
    with psycopg.connect(settings.postgres_dsn()) as conn:
        return conn.execute("SELECT count(*) FROM registry.changes").fetchone()[0]


@pytest.mark.parametrize("verb", list(VERBS))
@pytest.mark.parametrize("caller, code", [
    ("nobody", "INVALID_TEXT"),     # the token argument is text: refused by the grammar
    ("garbage", "TOKEN_MALFORMED"),
    ("trader", "ADMIN_REQUIRED"),
    ("service account", "SERVICE_ACCOUNT_REFUSED"),
])
def test_an_admin_verb_refuses_everyone_but_an_admin(
        registry, trader_token, service_account_token, test_settings, verb, caller, code):
    token = {"nobody": None, "garbage": "not-a-token", "trader": trader_token,
             "service account": service_account_token}[caller]
    symbol = new_asset_symbol()
    before = journal_size(test_settings)
    with pytest.raises(CodedError) as raised:
        VERBS[verb](registry, token, symbol)
    assert raised.value.code == code, raised.value
    assert journal_size(test_settings) == before
    catalogue = registry.get_catalogue()
    assert symbol not in catalogue["assets"]
    assert catalogue["markets"]["BTC-USDT"]["status"] == "trading"


def test_an_admin_announces_a_market_again_without_changing_it(
        registry, admin_token, test_settings):
    """``announce`` republishes the definition as its last change's event at
    that change's version; nothing is journaled, the catalogue is unchanged."""
    before, journaled = registry.get_catalogue(), journal_size(test_settings)
    announced = registry.announce(admin_token, "BTC-USDT")
    assert announced["symbol"] == "BTC-USDT"
    assert announced["event"] in ("market_listed", "market_updated")
    assert announced["message_id"].startswith(f"registry:{announced['version']}:announced:")
    assert registry.announce(admin_token, "USDT")["event"] == "asset_listed"
    assert (registry.get_catalogue(), journal_size(test_settings)) == (before, journaled)
    for symbol, code in (("NOPE-USDT", "UNKNOWN_MARKET"), ("NOPE", "UNKNOWN_ASSET"),
                         (None, "INVALID_TEXT")):
        with pytest.raises(CodedError) as raised:
            registry.announce(admin_token, symbol)
        assert raised.value.code == code


def test_an_admin_reads_the_journal(registry, admin_token, test_settings):
    entries = registry.journal(admin_token, 5)
    assert 0 < len(entries) <= 5 and journal_size(test_settings) >= len(entries)
