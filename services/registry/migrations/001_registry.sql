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

CREATE FUNCTION registry.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'REGISTRY_JOURNAL_APPEND_ONLY: registry.changes is append-only';
END $$;
CREATE TRIGGER changes_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON registry.changes
    FOR EACH STATEMENT EXECUTE FUNCTION registry.refuse_change();

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

-- The whole catalogue as one document, consistent (one statement).
CREATE FUNCTION registry.catalogue() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'version', (SELECT coalesce(max(id), 0) FROM registry.changes),
        'assets', (SELECT coalesce(jsonb_object_agg(symbol, spec), '{}') FROM registry.assets),
        'markets', (SELECT coalesce(jsonb_object_agg(symbol, spec), '{}') FROM registry.markets))
$$;

CREATE FUNCTION registry.catalogue_version() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(max(id), 0) FROM registry.changes
$$;

-- Each asset's scale, for ledgers that check amounts in SQL (wallets' holds).
CREATE FUNCTION registry.asset_scales() RETURNS TABLE (asset text, scale int)
LANGUAGE sql STABLE AS $$
    SELECT symbol, scale FROM registry.assets
$$;
