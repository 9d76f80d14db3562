"""Listing through the registry's RPC: only a person with the realm role
admin may, every refusal is a typed coded error, every change is journaled
and announced through the outbox."""
import psycopg
import pytest

from services.common.errors import InvalidInput
from services.registry.errors import (AdminRequired, AssetExists, ImmutableField,
                                      InvalidStatusChange, ServiceAccountRefused, TokenRefused,
                                      UnknownMarket)
from tests.integration.registry.conftest import new_asset_symbol
from tests.integration.registry_kit import asset_spec, market_spec


def journal_and_outbox(settings, symbol):
    with psycopg.connect(settings.postgres_dsn()) as conn:
        kinds = [r[0] for r in conn.execute(
            "SELECT kind FROM registry.changes WHERE symbol = %s ORDER BY id", (symbol,))]
        events = [r[0] for r in conn.execute(
            "SELECT routing_key FROM outbox WHERE stream = 'registry' AND payload->>'symbol' = %s "
            "ORDER BY id", (symbol,))]
    return kinds, events


def test_a_trader_a_service_account_and_a_bad_token_are_refused_with_codes(
        registry, trader_token, service_account_token):
    spec = asset_spec(new_asset_symbol())
    with pytest.raises(AdminRequired) as refused:
        registry.list_asset(trader_token, spec)
    assert refused.value.code == "ADMIN_REQUIRED"
    with pytest.raises(ServiceAccountRefused) as refused:
        registry.list_asset(service_account_token, spec)
    assert refused.value.code == "SERVICE_ACCOUNT_REFUSED"
    with pytest.raises(TokenRefused) as refused:
        registry.list_asset("not-a-token", spec)
    assert refused.value.code == "TOKEN_MALFORMED"
    assert registry.get_catalogue()["assets"].get(spec["symbol"]) is None


def test_listing_is_validated_journaled_announced_and_idempotent(registry, admin_token,
                                                                   test_settings):
    base, quote = new_asset_symbol(), new_asset_symbol()
    assert registry.list_asset(admin_token, asset_spec(base, scale=4))["listed"] is True
    assert registry.list_asset(admin_token, asset_spec(base, scale=4))["listed"] is False
    with pytest.raises(AssetExists):
        registry.list_asset(admin_token, asset_spec(base, scale=5))
    registry.list_asset(admin_token, asset_spec(quote, scale=2, chain="ethereum"))
    symbol = f"{base}-{quote}"
    # A lot finer than the base's 4 decimals, tick x lot finer than the quote's 2.
    with pytest.raises(InvalidInput) as refused:
        registry.list_market(admin_token, market_spec(symbol, tick="0.01", lot="0.00001"))
    assert refused.value.code == "OFF_GRID"
    with pytest.raises(InvalidInput) as refused:
        registry.list_market(admin_token, market_spec(symbol, tick="0.01", lot="0.1"))
    assert refused.value.code == "OFF_GRID"
    with pytest.raises(InvalidInput) as refused:
        registry.list_market(admin_token, market_spec(symbol, tick=0.01, lot="1"))
    assert refused.value.code == "INVALID_NUMBER"
    listed = registry.list_market(admin_token, market_spec(symbol, tick="1", lot="0.01"))
    assert listed["listed"] is True and listed["market"]["status"] == "trading"
    assert registry.get_catalogue()["markets"][symbol]["lot_size"] == "0.01"

    with pytest.raises(ImmutableField):
        registry.update_market(admin_token, symbol, {"tick_size": "2"})
    with pytest.raises(UnknownMarket):
        registry.update_market(admin_token, "NOPE-NOPE", {"status": "halted"})
    updated = registry.update_market(admin_token, symbol, {"taker_fee": "0.003"})
    assert updated["taker_fee"] == "0.003"
    registry.update_market(admin_token, symbol, {"status": "delisted"})
    with pytest.raises(InvalidStatusChange):
        registry.update_market(admin_token, symbol, {"status": "trading"})

    assert journal_and_outbox(test_settings, symbol)[0] == [
        "market_listed", "market_updated", "market_updated"]
    assert journal_and_outbox(test_settings, base)[0] == ["asset_listed"]


def test_the_journal_is_append_only(test_settings):
    with psycopg.connect(test_settings.postgres_dsn()) as conn:
        with pytest.raises(psycopg.errors.RaiseException):
            conn.execute("DELETE FROM registry.changes WHERE id = 1")
