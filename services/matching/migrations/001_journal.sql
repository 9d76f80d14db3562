-- Markets: the engine's configuration (services.matching.models.MarketConfig).
-- Halted/resumed state is not here: it is a journaled engine command.
CREATE TABLE markets (
    symbol     text        PRIMARY KEY,
    config     jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The command journal: the source of truth of every book. An engine is
-- rebuilt by replaying it (from a snapshot). The primary key fences a stale
-- engine: two processes can never both journal the same (market, seq).
CREATE TABLE matching_journal (
    market     text   NOT NULL,
    seq        bigint NOT NULL,
    command_id text   NOT NULL,
    command    jsonb  NOT NULL,
    at_ms      bigint NOT NULL,
    PRIMARY KEY (market, seq)
);
-- A redelivered command is recognised and not applied twice.
CREATE UNIQUE INDEX matching_journal_command ON matching_journal (market, command_id);

CREATE TABLE matching_snapshots (
    market   text        NOT NULL,
    seq      bigint      NOT NULL,
    snapshot jsonb       NOT NULL,
    taken_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (market, seq)
);

INSERT INTO markets (symbol, config) VALUES
  ('BTC-USDT', '{"symbol": "BTC-USDT", "base_asset": "BTC", "quote_asset": "USDT",
                 "tick_size": "0.01", "lot_size": "0.0001",
                 "min_quantity": "0.0001", "max_quantity": "1000",
                 "min_notional": "5", "price_band_percent": "20",
                 "max_open_orders": 200, "default_stp": "EXPIRE_TAKER"}'),
  ('ETH-USDT', '{"symbol": "ETH-USDT", "base_asset": "ETH", "quote_asset": "USDT",
                 "tick_size": "0.01", "lot_size": "0.0001",
                 "min_quantity": "0.0001", "max_quantity": "10000",
                 "min_notional": "5", "price_band_percent": "20",
                 "max_open_orders": 200, "default_stp": "EXPIRE_TAKER"}');
