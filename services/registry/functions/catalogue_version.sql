-- The catalogue's version: the id of the last change (0: nothing listed).
CREATE OR REPLACE FUNCTION registry.catalogue_version() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(max(id), 0) FROM registry.changes
$$;
-- SECURITY DEFINER: every service may read the catalogue (EXECUTE is
-- PUBLIC's), none of the registry's tables.
