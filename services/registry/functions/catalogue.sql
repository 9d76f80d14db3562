-- The whole catalogue as one document, consistent (one statement).
CREATE OR REPLACE FUNCTION registry.catalogue() RETURNS jsonb
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object(
        'version', (SELECT coalesce(max(id), 0) FROM registry.changes),
        'assets', (SELECT coalesce(jsonb_object_agg(symbol, spec), '{}') FROM registry.assets),
        'markets', (SELECT coalesce(jsonb_object_agg(symbol, spec), '{}') FROM registry.markets))
$$;
-- SECURITY DEFINER: every service may read the catalogue (EXECUTE is
-- PUBLIC's), none of the registry's tables.
