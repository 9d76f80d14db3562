-- Each asset's scale, for ledgers that check amounts in SQL (wallets' holds).
-- PL/pgSQL, not SQL: a SQL function with a SET clause is never inlined and
-- its query is planned again at every call (about 7% of a single hold's
-- time); PL/pgSQL keeps the plan for the session.
CREATE OR REPLACE FUNCTION registry.asset_scales() RETURNS TABLE (asset text, scale int)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY SELECT a.symbol, a.scale FROM registry.assets a;
END $$;
-- SECURITY DEFINER: every service may read the catalogue (EXECUTE is
-- PUBLIC's), none of the registry's tables.
