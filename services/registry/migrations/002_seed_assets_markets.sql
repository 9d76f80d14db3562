-- Seed data: the assets and markets the exchange opens with. Applied once to
-- every database (the demo's and the tests'), journaled as the registry
-- journals any listing, with the actor 'seed'. Later listings go through the
-- registry service (RPC list_asset / list_market, or services.registry.cli).
WITH listed AS (
    INSERT INTO registry.changes (actor, kind, symbol, spec, change)
    SELECT 'seed', 'asset_listed', s->>'symbol', s, s FROM jsonb_array_elements('[
      {"symbol": "BTC", "scale": 8, "chain": "bitcoin", "confirmations": 3,
       "withdrawal_fee": "0.0002", "min_withdrawal": "0.001", "daily_withdrawal_limit": "10",
       "deposit_enabled": true, "withdraw_enabled": true},
      {"symbol": "ETH", "scale": 18, "chain": "ethereum", "confirmations": 12,
       "withdrawal_fee": "0.002", "min_withdrawal": "0.01", "daily_withdrawal_limit": "200",
       "deposit_enabled": true, "withdraw_enabled": true},
      {"symbol": "USDT", "scale": 6, "chain": "ethereum", "confirmations": 12,
       "withdrawal_fee": "1", "min_withdrawal": "10", "daily_withdrawal_limit": "500000",
       "deposit_enabled": true, "withdraw_enabled": true}
    ]'::jsonb) AS s
    RETURNING id, symbol, spec)
INSERT INTO registry.assets (symbol, scale, spec, version)
SELECT symbol, (spec->>'scale')::int, spec, id FROM listed;

WITH listed AS (
    INSERT INTO registry.changes (actor, kind, symbol, spec, change)
    SELECT 'seed', 'market_listed', s->>'symbol', s, s FROM jsonb_array_elements('[
      {"symbol": "BTC-USDT", "base": "BTC", "quote": "USDT", "tick_size": "0.01",
       "lot_size": "0.0001", "min_quantity": "0.0001", "max_quantity": "1000",
       "min_notional": "5", "price_band_percent": "20", "max_open_orders": 200,
       "default_stp": "EXPIRE_TAKER", "maker_fee": "0.001", "taker_fee": "0.002",
       "status": "trading"},
      {"symbol": "ETH-USDT", "base": "ETH", "quote": "USDT", "tick_size": "0.01",
       "lot_size": "0.0001", "min_quantity": "0.0001", "max_quantity": "10000",
       "min_notional": "5", "price_band_percent": "20", "max_open_orders": 200,
       "default_stp": "EXPIRE_TAKER", "maker_fee": "0.001", "taker_fee": "0.002",
       "status": "trading"}
    ]'::jsonb) AS s
    RETURNING id, symbol, spec)
INSERT INTO registry.markets (symbol, base, quote, status, spec, version)
SELECT symbol, spec->>'base', spec->>'quote', spec->>'status', spec, id FROM listed;
