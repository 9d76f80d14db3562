-- Each asset's scale, for ledgers that check amounts in SQL (wallets' holds).
CREATE OR REPLACE FUNCTION registry.asset_scales() RETURNS TABLE (asset text, scale int)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT symbol, scale FROM registry.assets
$$;
-- SECURITY DEFINER: every service may read the catalogue (EXECUTE is
-- PUBLIC's), none of the registry's tables.
