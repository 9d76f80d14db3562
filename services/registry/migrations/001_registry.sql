-- ran as sha256:4046123eab704eee5ac6d32467de3cfc0c7e8026d81fd6017ed61e10553fae8e
-- The registry: the one owner of assets and markets. Other services read the
-- catalogue through the declared functions below (registry.catalogue(),
-- registry.catalogue_version(), registry.asset_scales()), never these tables.
--
-- Each row's spec is the canonical definition written by the registry service
-- after validation (services.common.catalogue AssetInfo / MarketInfo
-- .to_dict(): decimal strings, no floats); the typed columns repeat what SQL
-- readers need and what the constraints check.
CREATE SCHEMA registry;

-- Append-only: every listing and change, in order. Its id is the catalogue's
-- version: a reader knows whether it has seen a change.
CREATE TABLE registry.changes (
    id     bigserial   PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT now(),
    actor  text        NOT NULL,
    kind   text        NOT NULL CHECK (kind IN ('asset_listed', 'market_listed', 'market_updated')),
    symbol text        NOT NULL,
    spec   jsonb       NOT NULL,   -- the whole definition after the change
    change jsonb       NOT NULL    -- what the request changed
);

-- Append-only: functions/refuse_change.sql.

CREATE TABLE registry.assets (
    symbol    text   PRIMARY KEY CHECK (symbol ~ '^[A-Z0-9]{2,16}$'),
    scale     int    NOT NULL CHECK (scale BETWEEN 0 AND 18),
    spec      jsonb  NOT NULL,
    version   bigint NOT NULL REFERENCES registry.changes (id)
);

CREATE TABLE registry.markets (
    symbol    text   PRIMARY KEY CHECK (symbol = base || '-' || quote),
    base      text   NOT NULL REFERENCES registry.assets (symbol),
    quote     text   NOT NULL REFERENCES registry.assets (symbol),
    status    text   NOT NULL CHECK (status IN ('pre_trading', 'trading', 'halted', 'delisted')),
    spec      jsonb  NOT NULL,
    version   bigint NOT NULL REFERENCES registry.changes (id)
);

-- The declared functions: functions/catalogue.sql, catalogue_version.sql,
-- asset_scales.sql.
