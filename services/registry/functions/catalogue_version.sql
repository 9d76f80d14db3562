-- The catalogue's version: the id of the last change (0: nothing listed).
CREATE OR REPLACE FUNCTION registry.catalogue_version() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(max(id), 0) FROM registry.changes
$$;
